// The Agent's verbs over an in-memory node (test/unit/fakes): ADD, DEL,
// CHECK, GC, STATUS and the IPAM verbs, their idempotent retries, the
// intent → kernel → ready machine with its rollback, and the pool retry
// (allocate → refresh → retry). No root, no processes: the lab suites cover
// the same verbs against the real kernel.
import t from 'tap';
import { FakeNode, crashAt, netConf, NIC_MAC } from './fakes/fake-node.js';
import type { CniCall } from '../../control/types.js';
import {
  DataplaneError, DataplaneUnavailableError, InvalidEnvError, NotReadyError, PoolExhaustedError, TryAgainError, UnknownContainerError, VnetError,
} from '../../control/errors.js';
import { hostVethName } from '../../control/netlink/veth.js';
import { RECLAIM_RETRY_MS } from '../../control/agent/agent.js';

const NOTHING = { veths: [], podIfaces: [], attached: [], endpoints: [], held: [] };

function call(node: FakeNode, id: string, extra: Partial<CniCall> = {}): CniCall {
  const netns = node.addNetns(`/var/run/netns/${id}`);
  return { containerId: id, ifName: 'eth0', netns, args: { K8S_POD_NAME: id, K8S_POD_NAMESPACE: 'default' }, config: netConf(), ...extra };
}

for (const mode of ['iptables', 'ebpf'] as const) {
  t.test(`${mode}: ADD wires the pod, CHECK passes, DEL removes every trace`, async (t) => {
    const node = new FakeNode();
    const { agent } = node.agent();
    const c = call(node, 'web', { config: netConf({ dataplane: mode }) });
    const res = await agent.add(c);
    const veth = hostVethName('web', 'eth0');
    t.match(res, {
      cniVersion: '1.1.0',
      interfaces: [{ name: veth }, { name: 'eth0', sandbox: c.netns }],
      ips: [{ address: '10.240.0.10/16', gateway: '10.240.0.1', interface: 1 }],
      routes: [{ dst: '0.0.0.0/0', gw: '10.240.0.1' }],
    });
    t.match(node.podIface(c.netns), { ip: '10.240.0.10', prefixLength: 16, gateway: '10.240.0.1', mac: res.interfaces![1]!.mac });
    t.ok(node.dp[mode].endpoints.has(veth), 'attached in the dataplane');
    t.match(node.dp[mode].node, { nic: 'eth0', nicMac: NIC_MAC, primaryIp: '10.240.0.4', subnet: '10.240.0.0/16', gateway: '10.240.0.1' }, 'node set up');
    const rec = node.store.snapshot().endpoints['web/eth0'];
    t.match(rec, { phase: 'ready', ip: '10.240.0.10', mode, podName: 'web', podNamespace: 'default' });
    t.notOk(rec?.owner, 'a ready endpoint has no owner');
    await agent.check({ ...c, prevResult: res });
    await agent.del(c);
    t.same(node.leftovers(), NOTHING, 'nothing left');
    t.equal(node.dp[mode].node, undefined, 'the last DEL removed the node-wide state');
    t.equal(node.store.snapshot().node, undefined, 'and its record');
  });
}

t.test('a repeated ADD (same container, ifname, netns) returns the same result without touching the kernel', async (t) => {
  const node = new FakeNode();
  const { agent } = node.agent();
  const c = call(node, 'web');
  const first = await agent.add(c);
  const ensures = node.dp.iptables.ensures;
  const again = await agent.add(c);
  t.same(again, first, 'same IP and MACs');
  t.equal(node.dp.iptables.ensures, ensures, 'no node re-setup');
  t.equal(Object.keys(node.store.snapshot().ipam.holdings).length, 1, 'one IP held');
});

t.test('a repeated ADD finding its endpoint damaged rebuilds it with the same IP and MACs', async (t) => {
  const node = new FakeNode();
  const { agent } = node.agent();
  const c = call(node, 'web');
  const first = await agent.add(c);
  node.netns.get(c.netns)!.get('eth0')!.ip = undefined; // someone flushed the pod's address
  const again = await agent.add(c);
  t.same(again, first, 'same IP and MACs');
  t.equal(node.podIface(c.netns)?.ip, '10.240.0.10', 'the address is back');
  await agent.check(c);
});

t.test('DEL is idempotent: unknown endpoint, repeated DEL, empty netns', async (t) => {
  const node = new FakeNode();
  const { agent } = node.agent();
  await agent.del({ ...call(node, 'never'), netns: '' });
  const c = call(node, 'web');
  await agent.add(c);
  await agent.del(c);
  await agent.del(c);
  t.same(node.leftovers(), NOTHING);
});

t.test('DEL after the runtime removed the netns succeeds and leaves nothing', async (t) => {
  const node = new FakeNode();
  const { agent } = node.agent();
  const keep = call(node, 'keep');
  await agent.add(keep);
  const c = call(node, 'gone');
  await agent.add(c);
  node.removeNetns(c.netns);
  await agent.del(c);
  t.same(node.store.snapshot().endpoints['gone/eth0'], undefined);
  t.notOk(node.dp.iptables.endpoints.has(hostVethName('gone', 'eth0')), 'detached');
  t.equal(Object.keys(node.store.snapshot().ipam.holdings).length, 1, 'only the kept pod holds an IP');
});

t.test('CHECK reports what is wrong', async (t) => {
  const node = new FakeNode();
  const { agent } = node.agent();
  const c = call(node, 'web');
  await t.rejects(agent.check(c), UnknownContainerError, 'unknown container');
  const res = await agent.add(c);
  await t.rejects(agent.check({ ...c, prevResult: { ...res, ips: [{ address: '10.240.0.99/16' }] } }), VnetError, 'prevResult disagrees');
  node.dp.iptables.endpoints.clear();
  await t.rejects(agent.check(c), DataplaneError, 'dataplane state missing');
});

t.test('ADD with the NIC missing or down: the right error and nothing changed', async (t) => {
  const node = new FakeNode();
  const { agent } = node.agent();
  const c = call(node, 'web');
  node.nicPresent = false;
  await t.rejects(agent.add(c), { constructor: DataplaneUnavailableError, message: /eth0 not found/ });
  node.nicPresent = true;
  node.nicUp = false;
  await t.rejects(agent.add(c), { constructor: DataplaneUnavailableError, message: /eth0 is down/ });
  await t.rejects(agent.status(c.config), { constructor: NotReadyError, message: /down/ });
  t.same(node.leftovers(), NOTHING);
  t.equal(node.store.writes, 0, 'the store was never written');
});

t.test('a kernel step failing mid-ADD rolls back: no veth, no record, no IP', async (t) => {
  for (const op of ['createVethPair', 'configurePodSide', 'attachEndpoint'] as const) {
    const node = new FakeNode();
    const { agent } = node.agent();
    const c = call(node, 'web');
    node.failNext.add(op);
    await t.rejects(agent.add(c), DataplaneError, `${op} fails the ADD`);
    t.same({ ...node.leftovers() }, NOTHING, `${op}: rolled back`);
    const res = await agent.add(c);
    t.match(res.ips?.[0]?.address, /^10\.240\.0\.\d+\/16$/, `${op}: a retry succeeds`);
    t.equal(Object.keys(node.store.snapshot().ipam.holdings).length, 1, `${op}: one IP held`);
  }
});

t.test('the netns disappearing mid-ADD: code 4 (InvalidEnvError), rolled back', async (t) => {
  const node = new FakeNode();
  const c = call(node, 'web');
  node.failNext.add('configurePodSide');
  const { agent } = node.agent({ faults: { at: (p) => { if (p === 'add:after-veth') node.removeNetns(c.netns); } } });
  await t.rejects(agent.add(c), { constructor: InvalidEnvError, message: /disappeared during ADD/ });
  t.same(node.leftovers(), NOTHING);
});

t.test('GC removes endpoints and bare allocations the runtime no longer lists, keeps the rest', async (t) => {
  const node = new FakeNode();
  const { agent } = node.agent();
  const [a, b, c] = ['a', 'b', 'c'].map((id) => call(node, id)) as [CniCall, CniCall, CniCall];
  for (const x of [a, b, c]) await agent.add(x);
  await agent.ipamAdd(call(node, 'ipam-only'));
  await agent.gc(a.config, [{ containerId: 'a', ifName: 'eth0' }]);
  const st = node.store.snapshot();
  t.same(Object.keys(st.endpoints), ['a/eth0'], 'only the listed endpoint');
  t.same(Object.keys(st.ipam.holdings), ['a/eth0'], 'only its IP (the bare allocation went too)');
  t.same(node.leftovers().veths, [hostVethName('a', 'eth0')]);
  await agent.gc(a.config, []);
  t.same(node.leftovers(), NOTHING, 'GC with nothing valid empties the node');
  t.equal(node.dp.iptables.node, undefined, 'and tears the node down');
});

t.test('GC only touches its own network', async (t) => {
  const node = new FakeNode();
  const { agent } = node.agent();
  await agent.add(call(node, 'mine'));
  await agent.add(call(node, 'theirs', { config: netConf({ name: 'other' }) }));
  await agent.gc(netConf(), []);
  t.same(Object.keys(node.store.snapshot().endpoints), ['theirs/eth0']);
});

t.test('pool retry: an exhausted cached pool is re-read once, and a new address is used', async (t) => {
  const node = new FakeNode(1);
  const { agent } = node.agent();
  await agent.add(call(node, 'a'));
  const fetches = node.fetches;
  await t.rejects(agent.add(call(node, 'b')), PoolExhaustedError, 'pool of one: the second ADD fails');
  t.equal(node.fetches, fetches + 1, 'after one refresh');
  node.addresses.push('10.240.0.50');
  const res = await agent.add(call(node, 'c'));
  t.equal(res.ips?.[0]?.address, '10.240.0.50/16', 'the address the NIC gained, without waiting for the pool to age');
  t.same(Object.keys(node.store.snapshot().endpoints).sort(), ['a/eth0', 'c/eth0'], 'the failed ADD left nothing');
});

t.test('pool retry for azure-vnet-ipam ADD too', async (t) => {
  const node = new FakeNode(1);
  const { agent } = node.agent();
  await agent.ipamAdd(call(node, 'a'));
  await t.rejects(agent.ipamAdd(call(node, 'b')), PoolExhaustedError);
  node.addresses.push('10.240.0.51');
  const res = await agent.ipamAdd(call(node, 'c'));
  t.match(res, { ips: [{ address: '10.240.0.51/16', gateway: '10.240.0.1' }], routes: [{ dst: '0.0.0.0/0', gw: '10.240.0.1' }] });
  await agent.ipamDel(call(node, 'c'));
  t.same(Object.keys(node.store.snapshot().ipam.holdings), ['a/eth0']);
});

t.test('pool source: fetched before the lock when stale, cached otherwise, the cached pool used (and STATUS ready) while it is down', async (t) => {
  const node = new FakeNode();
  const { agent } = node.agent();
  await agent.add(call(node, 'a'));
  t.equal(node.fetches, 1, 'first ADD fetched');
  await agent.add(call(node, 'b'));
  t.equal(node.fetches, 1, 'a fresh pool is not re-read');
  node.clock += 31_000;
  node.poolDown = true;
  const res = await agent.add(call(node, 'c'));
  t.equal(node.fetches, 2, 'a stale pool is re-read');
  t.equal(res.ips?.[0]?.address, '10.240.0.12/16', 'the source is down: the cached pool still serves');
  await agent.status(netConf()); // a source outage with a cached pool is not a broken network
});

t.test('pool source down with no cached pool: the ADD fails, nothing changed', async (t) => {
  const node = new FakeNode();
  node.poolDown = true;
  const { agent } = node.agent();
  await t.rejects(agent.add(call(node, 'a')), /connection refused/);
  await t.rejects(agent.status(netConf()), { constructor: NotReadyError, message: /pool source unavailable/ }, 'STATUS says the source is down');
  t.same(node.leftovers(), NOTHING);
});

t.test('STATUS: ready with a free IP; a full pool is not ready unless capacity is asked about', async (t) => {
  const node = new FakeNode(1);
  const { agent } = node.agent();
  await agent.status(netConf());
  await agent.add(call(node, 'a'));
  await t.rejects(agent.status(netConf()), { constructor: NotReadyError, message: /no free pod IP/ });
  await agent.status(netConf(), { requireFreeIp: false });
});

t.test('ebpf unavailable: an error, or iptables when the conflist allows the fallback', async (t) => {
  const node = new FakeNode();
  node.bpfOk = false;
  const { agent } = node.agent();
  await t.rejects(agent.add(call(node, 'a', { config: netConf({ dataplane: 'ebpf' }) })), DataplaneUnavailableError);
  t.same(node.leftovers(), NOTHING, 'nothing changed');
  const res = await agent.add(call(node, 'b', { config: netConf({ dataplane: 'ebpf', dataplaneFallback: true }) }));
  t.ok(res.ips?.[0], 'served');
  t.match(node.store.snapshot().endpoints['b/eth0'], { mode: 'iptables' }, 'in iptables mode');
});

t.test('switching the dataplane: refused while pods of the old mode exist, done once they are gone', async (t) => {
  const node = new FakeNode();
  const { agent } = node.agent();
  const a = call(node, 'a');
  await agent.add(a);
  await t.rejects(agent.add(call(node, 'b', { config: netConf({ dataplane: 'ebpf' }) })), { constructor: DataplaneUnavailableError, message: /drain the node/ });
  await agent.add(call(node, 'keep-ipt', { config: netConf() }));
  await agent.del(a);
  await agent.del(call(node, 'keep-ipt'));
  await agent.add(call(node, 'c', { config: netConf({ dataplane: 'ebpf' }) }));
  t.equal(node.dp.iptables.node, undefined);
  t.ok(node.dp.ebpf.node, 'node now in ebpf mode');
});

t.test('the conditional mark: an ADD whose record was removed meanwhile fails with TryAgain, and leaves nothing', async (t) => {
  const node = new FakeNode();
  const c = call(node, 'web');
  // GC (from another process) runs while the ADD is between its kernel steps.
  const other = node.agent().agent;
  const { agent } = node.agent({ faults: { at: async (p) => { if (p === 'add:after-attach') await other.gc(c.config, []); } } });
  await t.rejects(agent.add(c), TryAgainError);
  t.same(node.leftovers(), NOTHING, 'the ADD rolled back what GC left, and GC released the IP');
});

t.test('concurrent ADDs on one Agent get distinct IPs; the node is set up once', async (t) => {
  const node = new FakeNode(40);
  const { agent } = node.agent();
  const calls = Array.from({ length: 30 }, (_, i) => call(node, `p${i}`));
  const res = await Promise.all(calls.map((c) => agent.add(c)));
  const ips = res.map((r) => r.ips?.[0]?.address);
  t.equal(new Set(ips).size, 30, 'no IP twice');
  t.equal(node.dp.iptables.ensures, 1, 'one node ensure');
  await Promise.all(calls.map((c) => agent.del(c)));
  t.same(node.leftovers(), NOTHING);
});

t.test('annotatePods fills in pod UID and labels late, only when they changed', async (t) => {
  const node = new FakeNode();
  const { agent } = node.agent();
  await agent.add(call(node, 'web'));
  const info = { uid: 'u-1', labels: { app: 'web' } };
  t.equal(await agent.annotatePods(() => info), 1);
  t.equal(await agent.annotatePods(() => info), 0, 'unchanged: no write');
  t.match(node.store.snapshot().endpoints['web/eth0'], { podUid: 'u-1', podLabels: { app: 'web' } });
});

t.test('a crash point the test does not name is a no-op', async (t) => {
  const node = new FakeNode();
  const { faults } = crashAt('del:after-veth');
  const { agent } = node.agent({ faults });
  const res = await agent.add(call(node, 'web'));
  t.ok(res.ips?.[0]);
});

t.test('expireIdle sweeps the node\'s dataplane when it keeps flow state (ebpf), else does nothing', async (t) => {
  const node = new FakeNode();
  const { agent } = node.agent();
  t.equal(await agent.expireIdle(), undefined, 'no node state yet');
  const a = call(node, 'a');
  await agent.add(a);
  t.equal(await agent.expireIdle(), undefined, 'iptables: nothing to sweep');
  await agent.del(a);
  await agent.add(call(node, 'b', { config: netConf({ dataplane: 'ebpf' }) }));
  t.same(await agent.expireIdle(), { nat: 1, inbound: 0 }, 'ebpf: swept');
  t.equal(node.dp.ebpf.sweeps, 1);
});

t.test('an empty pool first reclaims endpoints whose pod died without a DEL (netns and veth gone), never a live one', async (t) => {
  const node = new FakeNode(2);
  const { agent } = node.agent();
  const dead = call(node, 'dead');
  const live = call(node, 'live');
  await agent.add(dead);
  await agent.add(live);
  node.removeNetns(dead.netns); // the engine died: no DEL ever comes
  const res = await agent.add(call(node, 'new'));
  t.ok(res.ips?.[0], 'the ADD got the dead pod\'s address');
  t.same(Object.keys(node.store.snapshot().endpoints).sort(), ['live/eth0', 'new/eth0'], 'the dead endpoint was released, the live one kept');
  await t.rejects(agent.add(call(node, 'more')), PoolExhaustedError, 'nothing else to reclaim: the pool is really full');
});

t.test('on a full node, a reclaim that released nothing spares the next ADDs another pass for RECLAIM_RETRY_MS', async (t) => {
  const node = new FakeNode(2);
  const { agent } = node.agent();
  const a = call(node, 'a');
  await agent.add(a);
  await agent.add(call(node, 'b'));
  let passes = 0;
  const reclaim = agent.reclaim.bind(agent);
  agent.reclaim = () => {
    passes++;
    return reclaim();
  };
  await t.rejects(agent.add(call(node, 'c')), PoolExhaustedError, 'full, nobody died');
  t.equal(passes, 1, 'the first exhausted ADD reclaims');
  node.removeNetns(a.netns); // a dies without a DEL, right after that pass
  for (const id of ['d', 'e', 'f']) await t.rejects(agent.add(call(node, id)), PoolExhaustedError);
  t.equal(passes, 1, 'the next ADDs within the interval fail at once, without a pass');
  t.ok(node.store.snapshot().endpoints['a/eth0'], 'the dead endpoint is still held');
  node.clock += RECLAIM_RETRY_MS;
  const res = await agent.add(call(node, 'g'));
  t.equal(passes, 2, 'after the interval an exhausted ADD reclaims again');
  t.ok(res.ips?.[0], 'and gets the dead pod\'s address');
  t.notOk(node.store.snapshot().endpoints['a/eth0'], 'released');
  node.removeNetns(node.store.snapshot().endpoints['g/eth0']!.netns);
  t.ok((await agent.add(call(node, 'h'))).ips?.[0], 'a pass that released something does not hold back the next one');
  t.equal(passes, 3);
});
