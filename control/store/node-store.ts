// The node's durable state: IPAM allocations and endpoint records in one JSON
// document, changed only inside a transaction that holds the node lock and
// ends with an atomic write. The kernel is reality; this file is intent.
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from './atomic-file.js';
import { acquireLock } from './lock.js';
import { StoreError, storageHint } from '../errors.js';
import { emptyIpamState, validateIpamState, type IpamState } from '../ipam/allocator.js';
import type { DataplaneMode, NetConf } from '../types.js';
import type { EndpointPlan, NodeNetwork } from '../dataplane/types.js';
import type { EndpointOwner } from '../agent/owner.js';

export type EndpointPhase = 'creating' | 'ready' | 'deleting';

/** An endpoint as the store keeps it: the dataplane's plan plus ownership and lifecycle. */
export interface EndpointRecord extends EndpointPlan {
  mode: DataplaneMode;
  phase: EndpointPhase;
  network: string;
  podName?: string;
  podNamespace?: string;
  /** the pod's UID and labels, from the daemon's pod watch (Kubernetes only; filled in late if the pod was not known at ADD) */
  podUid?: string;
  podLabels?: Record<string, string>;
  createdAt: string;
  /** `dev:ino` of the netns at ADD: what the pod's namespace was, whatever its path names later (control/agent/reclaim.ts). */
  netnsId?: string;
  /** The process creating or deleting it (not kept once ready). */
  owner?: EndpointOwner;
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
  /**
   * This node enforces NetworkPolicy (set by the daemon when its policy engine
   * runs). A standalone ADD (daemon down) then starts the endpoint default-deny
   * both ways until the daemon is back and programs its real policy.
   */
  policyEnforced?: { since: string };
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
  return { ...s, version: 1, endpoints: s.endpoints, ipam: validateIpamState(s.ipam) };
}

interface QueuedTransaction {
  fn: (state: NodeState) => unknown;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

/** Identity of the file's current version: a rename by any writer changes the inode and ctime. */
interface FileVersion {
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

function sameVersion(a: FileVersion | undefined, b: FileVersion | undefined): boolean {
  return a !== undefined && b !== undefined && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

/** Transactions committed by one write; bounds how long one batch holds the node lock. */
const MAX_BATCH = 64;

export class NodeStore {
  readonly file: string;
  readonly lockFile: string;
  private readonly queue: QueuedTransaction[] = [];
  private draining = false;
  /** The text of the file as this process last read or wrote it: the daemon keeps state in memory, the file stays the durable copy. */
  private cached: { text: string; version: FileVersion } | undefined;

  constructor(
    readonly dir: string,
    private readonly lockTimeoutMs = 30_000,
  ) {
    this.file = path.join(dir, STATE_FILE);
    this.lockFile = path.join(dir, LOCK_FILE);
  }

  /** Read without the lock (for views and for deciding whether work is needed). */
  async peek(): Promise<NodeState> {
    return this.parse(await this.readText());
  }

  /**
   * Run fn on the current state under the node lock; if fn resolves, the
   * (possibly mutated) state is written atomically before the lock is released
   * and before the returned promise resolves.
   *
   * Group commit: transactions queued while a batch runs go into the next
   * batch, which takes the lock once, runs them one after another (each on
   * its own copy of the state, as if alone: a failing fn leaves no trace) and
   * writes + fsyncs once. Concurrent daemon requests so share the fsyncs that
   * dominate a transaction's cost. Only one batch per process waits for the
   * flock, so waiters never occupy more than one libuv pool thread.
   */
  transaction<T>(fn: (state: NodeState) => Promise<T> | T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ fn, resolve: resolve, reject });
      if (!this.draining) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.queue.length > 0) await this.runBatch(this.queue.splice(0, MAX_BATCH));
    } finally {
      this.draining = false;
    }
  }

  private async runBatch(batch: QueuedTransaction[]): Promise<void> {
    let lock: Awaited<ReturnType<typeof acquireLock>>;
    try {
      lock = await acquireLock(this.lockFile, this.lockTimeoutMs);
    } catch (err) {
      for (const t of batch) t.reject(err);
      return;
    }
    try {
      let committed: string;
      try {
        committed = JSON.stringify(this.parse(await this.readText()));
      } catch (err) {
        for (const t of batch) t.reject(err);
        return;
      }
      const original = committed;
      const succeeded: { t: QueuedTransaction; value: unknown }[] = [];
      for (const t of batch) {
        try {
          const state = JSON.parse(committed) as NodeState;
          const value = await t.fn(state);
          committed = JSON.stringify(state);
          succeeded.push({ t, value });
        } catch (err) {
          t.reject(err);
        }
      }
      if (committed !== original) {
        try {
          await this.save(committed);
        } catch (err) {
          for (const s of succeeded) s.t.reject(err);
          return;
        }
      }
      for (const s of succeeded) s.t.resolve(s.value);
    } finally {
      // The state is already durable; a failed unlock/close still drops the
      // flock with the fd, and throwing here would strand the queue.
      await lock.release().catch(() => {});
    }
  }

  private async version(): Promise<FileVersion | undefined> {
    try {
      const st = await stat(this.file, { bigint: true });
      return { ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new StoreError(`cannot stat ${this.file}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The file's text, from memory when nobody (a standalone plugin process) replaced it since; '' if absent. */
  private async readText(): Promise<string> {
    const version = await this.version();
    if (!version) return '';
    if (this.cached && sameVersion(this.cached.version, version)) return this.cached.text;
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
      throw new StoreError(`cannot read ${this.file}: ${(err as Error).message}`, { cause: err });
    }
    // Cache only if the file did not change while we read it.
    const after = await this.version();
    this.cached = sameVersion(version, after) ? { text, version } : undefined;
    return text;
  }

  private parse(text: string): NodeState {
    if (text === '') return emptyState();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new StoreError(`${this.file} is corrupt (${(err as Error).message}); move it aside and run GC to rebuild from the kernel`, { cause: err });
    }
    return validateState(parsed, this.file);
  }

  private async save(text: string): Promise<void> {
    this.cached = undefined;
    try {
      await writeFileAtomic(this.file, text);
    } catch (err) {
      throw new StoreError(`cannot write ${this.file}: ${(err as Error).message}${storageHint(err, this.dir)}`, { cause: err });
    }
    const version = await this.version().catch(() => undefined);
    if (version) this.cached = { text, version };
  }
}
