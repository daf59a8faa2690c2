// The pin lock of an ebpf dataplane: who may load, pin, unload, or change the
// policy maps under a pin root. flock(2) on the root directory, so the kernel
// drops it when a holder dies.
import fs from 'node:fs';
import { native } from '../../../native/index.js';
import { TryAgainError } from '../../errors.js';

const LOCK_TIMEOUT_MS = 10_000;

/** Per pin root, the tail of this process's queue for the pin lock. */
const pinQueues = new Map<string, Promise<void>>();

/**
 * The pin lock: flock on the pin root, across processes. Callers of one process
 * queue here first, so at most one of them waits in flock: each flock wait
 * occupies a libuv pool thread (4 by default), and a daemon running 8 ADDs at
 * once had all of them waiting in flock while the holder needed a pool thread
 * to finish (every waiter then timed out after 10 s).
 */
export async function withPinLock<T>(root: string, fn: () => Promise<T>, timeoutMs = LOCK_TIMEOUT_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  const before = pinQueues.get(root) ?? Promise.resolve();
  let done!: () => void;
  const mine = new Promise<void>((resolve) => (done = resolve));
  const tail = before.then(() => mine);
  pinQueues.set(root, tail);
  let timer: NodeJS.Timeout | undefined;
  try {
    const turn = await Promise.race([
      before.then(() => 'mine' as const),
      new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs))),
    ]);
    if (turn === 'timeout') throw new TryAgainError(`pin root ${root} stayed busy for ${timeoutMs} ms (another call of this process held it)`);
    const fd = fs.openSync(root, 'r');
    try {
      try {
        await native().flock(fd, true, Math.max(1, deadline - Date.now()));
      } catch (err) {
        throw new TryAgainError(`pin root ${root} is locked by another process`, { cause: err });
      }
      return await fn();
    } finally {
      fs.closeSync(fd); // closing the fd releases the flock
    }
  } finally {
    clearTimeout(timer);
    done();
    if (pinQueues.get(root) === tail) pinQueues.delete(root);
  }
}
