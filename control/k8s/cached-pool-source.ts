// The `kubernetes` pool source inside the daemon: the pool from the last
// synced NodeNetworkConfig, kept current by the NNC watch. A CNI call reads
// memory, never the API server; before the first sync it fails at once with
// a retryable error (code 11) saying why. No client-node import here, so the
// agent stays light.
import { TryAgainError } from '../errors.js';
import type { NicPool, PoolSource } from '../ipam/types.js';

export class CachedPoolSource implements PoolSource {
  readonly kind = 'kubernetes' as const;
  private pool: NicPool | undefined;
  /** why there is no usable pool (before the first sync, object missing or invalid) */
  private problem: string;

  constructor(readonly describe: string) {
    this.problem = `${describe} not synced from the Kubernetes API yet`;
  }

  set(pool: NicPool): void {
    this.pool = pool;
  }

  /** The object is gone or invalid: keep serving the last good pool (an API glitch must not orphan every pod) but say so. */
  unusable(problem: string): void {
    this.problem = problem;
  }

  get synced(): boolean {
    return this.pool !== undefined;
  }

  current(): NicPool | undefined {
    return this.pool;
  }

  fetch(): Promise<NicPool[]> {
    if (!this.pool) return Promise.reject(new TryAgainError(`kubernetes pool source: ${this.problem}; retry once the daemon has synced its NodeNetworkConfig`));
    return Promise.resolve([{ ...this.pool, addresses: [...this.pool.addresses] }]);
  }
}
