// Each decision reconcile (daemon start) makes, over an in-memory node:
// endpoints whose sandbox is gone are removed, unfinished ones are finished
// (owner gone) or left alone (owner alive), damaged live ones are rebuilt
// with their IP and MACs, stray veths are deleted, and the conditional
// delete leaves a record that changed since reconcile's snapshot.
import t from 'tap';
import { FakeNode, crashAt, netConf } from './fakes/fake-node.js';
import type { CniCall } from '../../control/types.js';
import type { NodeState } from '../../control/store/node-store.js';
import type { StateStore } from '../../control/agent/ports.js';
import { hostVethName } from '../../control/netlink/veth.js';

function callFor(node: FakeNode, id: string): CniCall {
  const netns = node.addNetns(`/var/run/netns/${id}`);
  return { containerId: id, ifName: 'eth0', netns, args: { K8S_POD_NAME: id, K8S_POD_NAMESPACE: 'default' }, config: netConf() };
}

const EMPTY = { removed: [], rebuilt: [], strayVeths: [], inProgress: [] };

t.test('a node the Agent never set up: nothing to do', async (t) => {
  const node = new FakeNode();
  node.addStrayVeth('azv000000000001');
  t.same(await node.agent().agent.reconcile(), EMPTY);
  t.same(node.leftovers().veths, ['azv000000000001'], 'without a node record nothing is touched');
});

t.test('intact live endpoints are left as they are', async (t) => {
  const node = new FakeNode();
  const a = node.agent().agent;
  const pods = ['a', 'b'].map((id) => callFor(node, id));
  const before = await Promise.all(pods.map((p) => a.add(p)));
  const writes = node.store.writes;
  t.same(await node.agent().agent.reconcile(), EMPTY);
  t.equal(node.store.writes, writes, 'no store write');
  for (const [i, p] of pods.entries()) t.same(await node.agent().agent.add(p), before[i], `${p.containerId} unchanged`);
});

t.test('an endpoint whose sandbox is gone (reboot, runtime crash) is removed with its IP', async (t) => {
  const node = new FakeNode();
  const a = node.agent().agent;
  const gone = callFor(node, 'gone');
  const live = callFor(node, 'live');
  await a.add(gone);
  await a.add(live);
  node.removeNetns(gone.netns);
  t.same(await node.agent().agent.reconcile(), { ...EMPTY, removed: ['gone/eth0'] });
  t.same(Object.keys(node.store.snapshot().ipam.holdings), ['live/eth0']);
  t.notOk(node.dp.iptables.endpoints.has(hostVethName('gone', 'eth0')), 'detached from the dataplane');
});

t.test('every sandbox gone (reboot): the node state is removed too', async (t) => {
  const node = new FakeNode();
  const a = node.agent().agent;
  const pods = ['a', 'b'].map((id) => callFor(node, id));
  for (const p of pods) await a.add(p);
  const ensures = node.dp.iptables.ensures;
  for (const p of pods) node.removeNetns(p.netns);
  t.same((await node.agent().agent.reconcile()).removed.sort(), ['a/eth0', 'b/eth0']);
  t.equal(node.dp.iptables.ensures, ensures, 'no re-install of a node about to be emptied');
  t.equal(node.store.snapshot().node, undefined, 'node record gone');
  t.equal(node.dp.iptables.node, undefined, 'node-wide dataplane state gone');
});

t.test('live pods: the node-wide dataplane state is re-installed in place (upgrade)', async (t) => {
  const node = new FakeNode();
  await node.agent().agent.add(callFor(node, 'a'));
  const ensures = node.dp.iptables.ensures;
  await node.agent().agent.reconcile();
  t.equal(node.dp.iptables.ensures, ensures + 1);
});

t.test('damaged live endpoints are rebuilt with their IP and MACs', async (t) => {
  const node = new FakeNode();
  const a = node.agent().agent;
  const flushed = callFor(node, 'flushed');
  const detached = callFor(node, 'detached');
  const res = { flushed: await a.add(flushed), detached: await a.add(detached) };
  node.netns.get(flushed.netns)!.get('eth0')!.ip = undefined;
  node.dp.iptables.endpoints.delete(hostVethName('detached', 'eth0'));
  const report = await node.agent().agent.reconcile();
  t.same(report.rebuilt.sort(), ['detached/eth0', 'flushed/eth0']);
  t.same(report.removed, []);
  const again = node.agent().agent;
  t.same(await again.add(flushed), res.flushed, 'flushed: same result');
  t.same(await again.add(detached), res.detached, 'detached: same result');
  await again.check(flushed);
  await again.check(detached);
  t.match(node.store.snapshot().endpoints['flushed/eth0'], { podName: 'flushed', podNamespace: 'default', phase: 'ready' }, 'pod identity kept');
});

t.test('stray veths (ours by name, no record) are deleted; owned ones kept', async (t) => {
  const node = new FakeNode();
  await node.agent().agent.add(callFor(node, 'a'));
  node.addStrayVeth('azv0123456789ab');
  const report = await node.agent().agent.reconcile();
  t.same(report, { ...EMPTY, strayVeths: ['azv0123456789ab'] });
  t.same(node.leftovers().veths, [hostVethName('a', 'eth0')]);
});

t.test('unfinished ADD and DEL: finished when the owner is gone, left alone while it runs', async (t) => {
  const node = new FakeNode();
  const a = node.agent().agent;
  const toDelete = callFor(node, 'deleting');
  await a.add(toDelete);
  const stops = {
    addDead: crashAt('add:after-veth'), addAlive: crashAt('add:after-veth'), delDead: crashAt('del:after-detach'),
  };
  const addDead = node.agent({ faults: stops.addDead.faults });
  const addAlive = node.agent({ faults: stops.addAlive.faults });
  const delDead = node.agent({ faults: stops.delDead.faults });
  void addDead.agent.add(callFor(node, 'add-dead'));
  void addAlive.agent.add(callFor(node, 'add-alive'));
  void delDead.agent.del(toDelete);
  await Promise.all([stops.addDead.reached, stops.addAlive.reached, stops.delDead.reached]);
  addDead.kill();
  delDead.kill();
  const report = await node.agent().agent.reconcile();
  t.same(report.removed.sort(), ['add-dead/eth0', 'deleting/eth0']);
  t.same(report.inProgress, ['add-alive/eth0']);
  t.same(report.strayVeths, [], 'the running ADD\'s veth is owned by its record, not stray');
  t.same(Object.keys(node.store.snapshot().endpoints), ['add-alive/eth0']);
});

/** A pod whose ADD was killed after its pod side was configured. */
async function victimCrashedMidAdd(): Promise<{ node: FakeNode; victim: CniCall }> {
  const node = new FakeNode();
  const victim = callFor(node, 'victim');
  const crash = crashAt('add:after-pod-config');
  const killed = node.agent({ faults: crash.faults });
  void killed.agent.add(victim);
  await crash.reached;
  killed.kill();
  return { node, victim };
}

/** The store as a reconcile pass sees it: peeks return the state of now, writes go through. */
function staleView(node: FakeNode): StateStore {
  const snapshot = node.store.snapshot();
  return { peek: async (): Promise<NodeState> => structuredClone(snapshot), transaction: (fn) => node.store.transaction(fn) };
}

t.test('conditional delete: a record that changed after reconcile looked at it is left alone', async (t) => {
  const { node, victim } = await victimCrashedMidAdd();
  // Reconcile works from a snapshot taken now (a slow pass over many pods)...
  const stale = staleView(node);
  // ...while kubelet's retry of the ADD runs to the end.
  const res = await node.agent().agent.add(victim);
  const report = await node.agent({}, stale).agent.reconcile();
  t.same(report.removed, [], 'not removed');
  t.same(report.inProgress, ['victim/eth0'], 'reported as changed under it');
  t.match(node.store.snapshot().endpoints['victim/eth0'], { phase: 'ready' }, 'the retried ADD\'s record stands');
  t.same(await node.agent().agent.add(victim), res, 'and the pod is whole');
  await node.agent().agent.check(victim);
});

t.test('conditional delete: a DEL whose record is unchanged proceeds', async (t) => {
  const { node } = await victimCrashedMidAdd();
  const stale = staleView(node);
  t.same((await node.agent({}, stale).agent.reconcile()).removed, ['victim/eth0']);
  t.same(node.store.snapshot().endpoints, {});
});
