// The ebpf pin lock (control/dataplane/ebpf/pin-lock.ts) with the real flock
// and the real libuv pool: callers of one process take turns before flock, so
// a burst of callers never fills the pool with flock waits while the holder
// needs a pool thread (8 concurrent ADDs in the daemon once all timed out).
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { withPinLock } from '../../control/dataplane/ebpf/pin-lock.js';
import { TryAgainError } from '../../control/errors.js';
import { native } from '../../native/index.js';

function tempRoot(t: Test): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vnet-pinlock-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  return root;
}

t.test('a burst of callers: each holder gets its pool work done, one holder at a time', async (t) => {
  const root = tempRoot(t);
  const file = path.join(root, 'data');
  fs.writeFileSync(file, 'x');
  let holding = 0;
  let most = 0;
  const callers = 16; // > the pool's 4 threads
  const results = await Promise.allSettled(
    Array.from({ length: callers }, () =>
      withPinLock(
        root,
        async () => {
          most = Math.max(most, ++holding);
          // Work that needs a libuv pool thread while the lock is held.
          await fs.promises.readFile(file);
          await fs.promises.stat(file);
          holding--;
        },
        // Long enough never to be reached when callers take turns; before the
        // queue, the waiters held every pool thread until they timed out.
        60_000,
      ),
    ),
  );
  t.same(results.filter((r) => r.status === 'rejected'), [], 'every caller got the lock');
  t.equal(most, 1, 'never two holders at once');
});

t.test('held by another open file (another process): TryAgain after the timeout, and the queue moves on', async (t) => {
  const root = tempRoot(t);
  const other = fs.openSync(root, 'r');
  await native().flock(other, true, 1000);
  const err = await withPinLock(root, () => Promise.resolve(), 200).catch((e: unknown) => e);
  t.type(err, TryAgainError);
  t.match((err as Error).message, /locked by another process/);
  fs.closeSync(other); // releases it
  t.equal(await withPinLock(root, () => Promise.resolve('ran'), 5000), 'ran', 'the next caller gets it once released');
});
