// Exponential backoff with jitter for the API watches and writers: the delay
// doubles per consecutive failure up to a cap, and each delay is drawn from
// [delay/2, delay] so a fleet of nodes that lost the API server together does
// not come back in lockstep.
export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  /** consecutive failures after which the delay stops growing (and the caller may call it unhealthy) */
  maxErrors: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 500, maxMs: 30_000, maxErrors: 10 };

export class Backoff {
  /** consecutive failures since the last success */
  failures = 0;

  constructor(
    readonly opts: BackoffOptions = DEFAULT_BACKOFF,
    private readonly random: () => number = Math.random,
  ) {}

  /** Count a failure and return how long to wait before the next try (ms). */
  next(): number {
    this.failures++;
    const exponent = Math.min(this.failures, this.opts.maxErrors) - 1;
    const ceiling = Math.min(this.opts.maxMs, this.opts.initialMs * 2 ** exponent);
    return Math.round(ceiling / 2 + (this.random() * ceiling) / 2);
  }

  /** true once failures reached maxErrors in a row */
  get exhausted(): boolean {
    return this.failures >= this.opts.maxErrors;
  }

  reset(): void {
    this.failures = 0;
  }
}

/** A sleep that `stop` cuts short. */
export function sleepUnless(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
