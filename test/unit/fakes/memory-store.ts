// The node store in memory, with the real one's transaction semantics
// (control/store/node-store.ts; the contract is StateStore in
// control/agent/ports.ts and test/unit/store-contract.test.ts checks both):
// transactions run one at a time, each on its own JSON copy of the committed
// state; a resolved one is committed before its promise resolves, a failed
// one leaves no trace; peek() hands out a copy. Stricter than the file store
// in one way: a nested transaction throws instead of deadlocking.
import { AsyncLocalStorage } from 'node:async_hooks';
import { emptyIpamState } from '../../../control/ipam/allocator.js';
import type { NodeState } from '../../../control/store/node-store.js';
import type { StateStore } from '../../../control/agent/ports.js';

export class MemoryStore implements StateStore {
  /** The committed state as the file would hold it (JSON text: no shared references, undefined fields dropped). */
  private committed: string;
  private tail: Promise<unknown> = Promise.resolve();
  /** set inside a transaction's fn, so a nested call is told apart from a concurrent one */
  private readonly inside = new AsyncLocalStorage<true>();
  /** commits so far (a transaction that changed nothing does not count, like the file store's skipped write) */
  writes = 0;

  constructor(initial?: NodeState) {
    this.committed = JSON.stringify(initial ?? { version: 1, ipam: emptyIpamState(), endpoints: {} });
  }

  async peek(): Promise<NodeState> {
    return JSON.parse(this.committed) as NodeState;
  }

  /** The committed state, synchronously (for assertions). */
  snapshot(): NodeState {
    return JSON.parse(this.committed) as NodeState;
  }

  transaction<T>(fn: (state: NodeState) => Promise<T> | T): Promise<T> {
    if (this.inside.getStore()) return Promise.reject(new Error('MemoryStore: transaction() called inside a transaction (the file store would deadlock)'));
    const turn = this.tail.then(async () => {
      const state = JSON.parse(this.committed) as NodeState;
      const value = await this.inside.run(true, () => fn(state));
      const text = JSON.stringify(state);
      if (text !== this.committed) {
        this.committed = text;
        this.writes++;
      }
      return value;
    });
    this.tail = turn.catch(() => {});
    return turn;
  }
}
