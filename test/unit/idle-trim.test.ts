// The daemon's idle trim: malloc_trim runs once the daemon has had no request
// in flight for the delay, never while one is being served, and once per
// quiet spell however many requests the burst had. The real addon call is
// exercised at the end (it must exist and not throw).
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { IdleTrimmer } from '../../control/daemon/idle-trim.js';
import { native } from '../../native/index.js';

t.test('trims once after a burst goes quiet, never mid-request', async (t) => {
  let trims = 0;
  const trimmer = new IdleTrimmer(30, () => trims++);
  trimmer.begin();
  trimmer.begin();
  trimmer.end();
  await sleep(80);
  t.equal(trims, 0, 'one request still in flight: no trim');
  trimmer.end();
  trimmer.begin();
  trimmer.end();
  await sleep(80);
  t.equal(trims, 1, 'one trim for the quiet spell after the burst');
  await sleep(80);
  t.equal(trims, 1, 'nothing more while idle');
  trimmer.begin();
  await sleep(50);
  t.equal(trims, 1, 'a request that starts cancels nothing already done and adds no trim');
  trimmer.end();
  await sleep(80);
  t.equal(trims, 2, 'the next quiet spell trims again');
  trimmer.stop();
});

t.test('a request arriving during the delay postpones the trim', async (t) => {
  let trims = 0;
  const trimmer = new IdleTrimmer(60, () => trims++);
  trimmer.begin();
  trimmer.end();
  await sleep(30);
  trimmer.begin();
  await sleep(60);
  t.equal(trims, 0, 'postponed while the new request runs');
  trimmer.end();
  await sleep(100);
  t.equal(trims, 1);
  trimmer.stop();
});

t.test('the addon trim exists and returns a boolean', async (t) => {
  t.type(native().trimMemory(), 'boolean');
});
