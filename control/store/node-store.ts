// The node's durable state: IPAM allocations and endpoint records in one JSON
// document, changed only inside a transaction that holds the node lock and
// ends with an atomic write. The kernel is reality; this file is intent.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from './atomic-file.js';
import { acquireLock } from './lock.js';
import { StoreError } from '../errors.js';
import { emptyIpamState, validateIpamState, type IpamState } from '../ipam/allocator.js';
import type { DataplaneMode, NetConf } from '../types.js';
import type { EndpointPlan, NodeNetwork } from '../dataplane/types.js';

export type EndpointPhase = 'creating' | 'ready' | 'deleting';

/** An endpoint as the store keeps it: the dataplane's plan plus ownership and lifecycle. */
export interface EndpointRecord extends EndpointPlan {
  mode: DataplaneMode;
  phase: EndpointPhase;
  network: string;
  podName?: string;
  podNamespace?: string;
  createdAt: string;
}

export interface NodeRecord {
  mode: DataplaneMode;
  network: NodeNetwork;
  /** The network configuration of the last ADD, so the daemon can reconcile and refresh without a CNI call. */
  config?: NetConf;
}

export interface NodeState {
  version: 1;
  ipam: IpamState;
  /** key: `${containerId}/${ifName}` */
  endpoints: Record<string, EndpointRecord>;
  node?: NodeRecord;
  /** epoch ms of the last successful pool fetch */
  poolFetchedAt?: number;
}

export const STATE_FILE = 'state.json';
const LOCK_FILE = 'state.lock';

export function endpointKey(containerId: string, ifName: string): string {
  return `${containerId}/${ifName}`;
}

function emptyState(): NodeState {
  return { version: 1, ipam: emptyIpamState(), endpoints: {} };
}

function validateState(x: unknown, file: string): NodeState {
  if (typeof x !== 'object' || x === null) throw new StoreError(`${file}: not a JSON object`);
  const s = x as Partial<NodeState>;
  if (s.version !== 1) throw new StoreError(`${file}: unsupported state version ${String(s.version)}`);
  if (typeof s.endpoints !== 'object' || s.endpoints === null) throw new StoreError(`${file}: endpoints missing`);
  return { ...s, version: 1, endpoints: s.endpoints, ipam: validateIpamState(s.ipam) } as NodeState;
}

export class NodeStore {
  readonly file: string;
  readonly lockFile: string;

  constructor(
    readonly dir: string,
    private readonly lockTimeoutMs = 30_000,
  ) {
    this.file = path.join(dir, STATE_FILE);
    this.lockFile = path.join(dir, LOCK_FILE);
  }

  /** Read without the lock (for views and for deciding whether work is needed). */
  async peek(): Promise<NodeState> {
    return this.load();
  }

  /**
   * Run fn on the current state under the node lock; if fn resolves, the
   * (possibly mutated) state is written atomically before the lock is released.
   */
  async transaction<T>(fn: (state: NodeState) => Promise<T> | T): Promise<T> {
    // One transaction at a time per process: a flock waiter occupies a libuv
    // pool thread, and the holder needs pool threads for its file I/O, so
    // unbounded in-process waiters (the daemon) could starve the holder.
    const prev = this.inProcess;
    let done!: () => void;
    this.inProcess = new Promise<void>((resolve) => (done = resolve));
    await prev;
    try {
      return await this.lockedTransaction(fn);
    } finally {
      done();
    }
  }

  private inProcess: Promise<void> = Promise.resolve();

  private async lockedTransaction<T>(fn: (state: NodeState) => Promise<T> | T): Promise<T> {
    const lock = await acquireLock(this.lockFile, this.lockTimeoutMs);
    try {
      const state = await this.load();
      const before = JSON.stringify(state);
      const result = await fn(state);
      const after = JSON.stringify(state);
      if (after !== before) await this.save(after);
      return result;
    } finally {
      await lock.release();
    }
  }

  private async load(): Promise<NodeState> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyState();
      throw new StoreError(`cannot read ${this.file}: ${(err as Error).message}`, { cause: err });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new StoreError(`${this.file} is corrupt (${(err as Error).message}); move it aside and run GC to rebuild from the kernel`, { cause: err });
    }
    return validateState(parsed, this.file);
  }

  private async save(text: string): Promise<void> {
    try {
      await writeFileAtomic(this.file, text);
    } catch (err) {
      throw new StoreError(`cannot write ${this.file}: ${(err as Error).message}`, { cause: err });
    }
  }
}
