// Gives freed native memory back once the daemon goes quiet. A burst of CNI
// calls runs netlink, flock and BPF work on libuv's pool threads, and glibc
// keeps what they free resident in the threads' arenas. This is the native
// half of keeping the daemon's RSS flat; the larger half was V8's young
// generation (capYoungGeneration in main.ts): the soak's 79 -> 112 MiB growth
// was mostly that, and a trim alone did not stop it (docs/reliability.md).
// malloc_trim(0) after a second of no requests costs ~1 ms, never mid-burst.
import { native } from '../../native/index.js';

export const IDLE_TRIM_MS = 1000;

export class IdleTrimmer {
  private inFlight = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly delayMs = IDLE_TRIM_MS,
    private readonly trim: () => void = () => native().trimMemory(),
  ) {}

  begin(): void {
    this.inFlight++;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  end(): void {
    this.inFlight = Math.max(0, this.inFlight - 1);
    if (this.inFlight > 0 || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.inFlight > 0) return;
      try {
        this.trim();
      } catch {
        // no addon (a test double's daemon): nothing to give back
      }
    }, this.delayMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
