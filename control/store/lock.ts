// The node lock: flock(2) on a file in the state directory. The kernel drops
// it when the holder dies, so kill -9 never leaves a stale lock behind (the
// original plugin's most reported failure).
import { open, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { native } from '../../native/index.js';
import { StoreError, TryAgainError, storageHint } from '../errors.js';

export interface HeldLock {
  release(): Promise<void>;
}

export async function acquireLock(file: string, timeoutMs: number): Promise<HeldLock> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 }).catch((err: unknown) => {
    throw new StoreError(`cannot create state directory ${path.dirname(file)}: ${(err as Error).message}${storageHint(err, path.dirname(file))}`, { cause: err });
  });
  const fh = await open(file, 'a', 0o600).catch((err: unknown) => {
    throw new StoreError(`cannot open lock file ${file}: ${(err as Error).message}${storageHint(err, path.dirname(file))}`, { cause: err });
  });
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const waiting = native().flockWait(fh.fd, true);
  try {
    const outcome = await Promise.race([waiting.then(() => 'locked' as const), timedOut]);
    if (outcome === 'timeout') {
      // Closing our fd leaves the waiting worker with its own dup: if it is
      // granted the lock later, the lock is dropped when that dup closes.
      waiting.catch(() => {});
      await fh.close();
      throw new TryAgainError(`timed out after ${timeoutMs} ms waiting for the node lock ${file}; another CNI call holds it`);
    }
  } catch (err) {
    if (err instanceof TryAgainError) throw err;
    await fh.close().catch(() => {});
    throw new StoreError(`cannot lock ${file}: ${(err as Error).message}`, { cause: err });
  } finally {
    clearTimeout(timer);
  }
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      try {
        native().funlock(fh.fd);
      } finally {
        await fh.close();
      }
    },
  };
}
