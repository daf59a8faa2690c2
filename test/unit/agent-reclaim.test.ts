// The reclaim decision (control/agent/reclaim.ts): an endpoint's IP goes back
// to the pool only when its netns path no longer names the netns of the ADD
// AND its host veth is gone. Observations are faked: no namespaces here.
import t from 'tap';
import { judge, seeNetns, netnsIdOf, type NetnsSeen } from '../../control/agent/reclaim.js';

const ADD_ID = '4:4026532999';
const ready = { phase: 'ready' as const, netns: '/proc/4242/ns/net', netnsId: ADD_ID };
const absent: NetnsSeen = { kind: 'absent' };
const same: NetnsSeen = { kind: 'id', id: ADD_ID };
const other: NetnsSeen = { kind: 'id', id: '4:4026533100' };

t.test('a pod whose netns and veth are gone is reclaimed', async (t) => {
  t.same(judge(ready, absent, false), { reclaim: true, reason: '/proc/4242/ns/net is gone and so is the veth' });
});

t.test('a reused PID (the path names another netns) with the veth gone is reclaimed', async (t) => {
  const v = judge(ready, other, false);
  t.equal(v.reclaim, true);
  t.match(v.reason, /now names another netns \(4:4026533100, was 4:4026532999\)/);
});

t.test('a live pod is never reclaimed', async (t) => {
  t.equal(judge(ready, same, false).reclaim, false, 'path still names the ADD netns, even with the veth deleted from inside the pod');
  t.equal(judge(ready, same, true).reclaim, false, 'path and veth both alive');
  t.equal(judge(ready, other, true).reclaim, false, 're-mounted path, but the veth shows the old netns is alive elsewhere');
  t.equal(judge(ready, absent, true).reclaim, false, 'path gone (process exited) but the netns is held by another process: veth alive');
  t.equal(judge({ ...ready, netnsId: undefined }, other, false).reclaim, false, 'a record from before identities were kept, path exists: cannot tell, keep');
  t.equal(judge(ready, { kind: 'unknown', error: 'EACCES' }, false).reclaim, false, 'a path that cannot be stat\'ed: keep');
  t.equal(judge({ ...ready, netns: '' }, absent, false).reclaim, false, 'no netns path recorded');
});

t.test('endpoints being created or deleted are left to their call, DEL or reconcile', async (t) => {
  for (const phase of ['creating', 'deleting'] as const) {
    t.match(judge({ ...ready, phase }, absent, false), { reclaim: false, reason: new RegExp(`^phase ${phase}`) });
  }
});

t.test('a record from before identities were kept is reclaimed only when its path and veth are both gone', async (t) => {
  t.equal(judge({ ...ready, netnsId: undefined }, absent, false).reclaim, true);
});

t.test('seeNetns maps stat outcomes', async (t) => {
  const fail = (code: string) => () => { throw Object.assign(new Error(code), { code }); };
  t.same(seeNetns('/x', () => ({ dev: 4n, ino: 4026532999n })), same, 'dev:ino of the file');
  t.same(seeNetns('/x', fail('ENOENT')), absent, 'ENOENT: gone');
  t.same(seeNetns('/x', fail('ESRCH')), absent, 'ESRCH (a /proc entry whose process exited): gone');
  t.same(seeNetns('/x', fail('EACCES')), { kind: 'unknown', error: 'EACCES' }, 'anything else: unknown');
  t.equal(netnsIdOf({ dev: 4, ino: 4026531840 }), '4:4026531840');
});
