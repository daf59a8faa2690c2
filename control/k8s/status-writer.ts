// The NodeNetworkConfig status the daemon writes back: counts and who holds
// which address. Changes are coalesced: any number of ADD/DEL within the
// debounce window cost one PATCH, a write in flight never overlaps another,
// and failures retry with backoff. CNI calls only mark the status dirty.
import type { Logger } from 'pino';
import { allocations, poolSummary } from '../ipam/allocator.js';
import { endpointKey, type NodeState } from '../store/node-store.js';
import { Backoff, type BackoffOptions } from './backoff.js';

export interface NncAllocation {
  ip: string;
  containerID: string;
  ifName: string;
  podNamespace?: string;
  podName?: string;
  podUID?: string;
}

export interface NncStatus {
  observedGeneration?: number;
  allocated: number;
  free: number;
  allocations: NncAllocation[];
}

/** The status for a node state (pure). */
export function nncStatusOf(state: NodeState, observedGeneration?: number): NncStatus {
  const summary = poolSummary(state.ipam);
  const status: NncStatus = {
    allocated: summary.used,
    free: summary.free,
    allocations: allocations(state.ipam).map((a) => {
      const rec = state.endpoints[endpointKey(a.owner.containerId, a.owner.ifName)];
      const entry: NncAllocation = { ip: a.ip, containerID: a.owner.containerId, ifName: a.owner.ifName };
      const podNamespace = a.podNamespace ?? rec?.podNamespace;
      const podName = a.podName ?? rec?.podName;
      if (podNamespace) entry.podNamespace = podNamespace;
      if (podName) entry.podName = podName;
      if (rec?.podUid) entry.podUID = rec.podUid;
      return entry;
    }),
  };
  if (observedGeneration !== undefined) status.observedGeneration = observedGeneration;
  return status;
}

export interface StatusWriterOptions {
  /** the status to write now; undefined: nothing to write yet (no NNC synced) */
  compute(): Promise<NncStatus | undefined>;
  write(status: NncStatus): Promise<void>;
  debounceMs: number;
  logger: Logger;
  backoff?: BackoffOptions;
}

export class StatusWriter {
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private dirty = false;
  private stopped = false;
  private lastWritten: string | undefined;
  private readonly backoff: Backoff;
  readonly stats = { writes: 0, failures: 0, unchanged: 0, marks: 0 };

  constructor(private readonly opts: StatusWriterOptions) {
    this.backoff = new Backoff(opts.backoff ?? { initialMs: 500, maxMs: 30_000, maxErrors: 10 });
  }

  /** Something the status shows changed; write it soon. Never waits. */
  markDirty(): void {
    this.stats.marks++;
    this.dirty = true;
    this.schedule(this.opts.debounceMs);
  }

  /** Forget what was written (the object was recreated), so the next write goes out even if unchanged. */
  forget(): void {
    this.lastWritten = undefined;
  }

  private schedule(ms: number): void {
    if (this.stopped || this.timer || this.inFlight) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.inFlight = this.run().finally(() => {
        this.inFlight = undefined;
        if (this.dirty) this.schedule(this.opts.debounceMs);
      });
    }, ms);
  }

  private async run(): Promise<void> {
    this.dirty = false;
    let status: NncStatus | undefined;
    try {
      status = await this.opts.compute();
      if (!status) return;
      const text = JSON.stringify(status);
      if (text === this.lastWritten) {
        this.stats.unchanged++;
        return;
      }
      await this.opts.write(status);
      this.lastWritten = text;
      this.stats.writes++;
      this.backoff.reset();
    } catch (err) {
      this.stats.failures++;
      const delayMs = this.backoff.next();
      this.opts.logger.warn({ err: (err as Error).message, failures: this.backoff.failures, delayMs }, 'NodeNetworkConfig status write failed; retrying');
      this.dirty = false;
      this.inFlight = undefined;
      // Retry after the backoff, not the debounce; later marks fold into that retry.
      this.retryAfter(delayMs);
    }
  }

  private retryAfter(ms: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.markDirtyNow();
    }, ms);
  }

  private markDirtyNow(): void {
    this.dirty = true;
    this.schedule(0);
  }

  /** Write now if anything is pending (shutdown, tests). */
  async flush(): Promise<void> {
    if (this.inFlight) await this.inFlight;
    if (this.timer && this.dirty) {
      clearTimeout(this.timer);
      this.timer = undefined;
      await this.run();
    }
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
