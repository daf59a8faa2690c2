// kill -9 at every step of ADD and DEL, in-process: the call stops at the
// fault point for good (crashAt), its process is gone, and a fresh Agent over
// the same store and kernel converges whichever way the node goes on: the
// runtime reruns the call, DELs, GCs, or the daemon restarts and reconciles.
// Nothing leaks (veth, pod interface, dataplane entry, record, IP) and a
// bystander pod is never touched. The lab suite plugin-robustness does the
// same with real processes and a real kernel.
import t, { type Test } from 'tap';
import { FakeNode, crashAt, netConf, pauseAt } from './fakes/fake-node.js';
import { FAULT_POINTS, type FaultPoint } from '../../control/agent/ports.js';
import type { CniCall, DataplaneMode } from '../../control/types.js';
import { hostVethName } from '../../control/netlink/veth.js';

const ADD_POINTS = FAULT_POINTS.filter((p) => p.startsWith('add:'));
const DEL_POINTS = FAULT_POINTS.filter((p) => p.startsWith('del:'));
type Then = 'rerun' | 'del' | 'gc' | 'reconcile';

interface Setup {
  node: FakeNode;
  bystander: CniCall;
  victim: CniCall;
}

function callFor(node: FakeNode, id: string, mode: DataplaneMode): CniCall {
  const netns = node.addNetns(`/var/run/netns/${id}`);
  return { containerId: id, ifName: 'eth0', netns, args: {}, config: netConf({ dataplane: mode }) };
}

async function setup(mode: DataplaneMode): Promise<Setup> {
  const node = new FakeNode();
  const bystander = callFor(node, 'bystander', mode);
  await node.agent().agent.add(bystander);
  return { node, bystander, victim: callFor(node, 'victim', mode) };
}

/** Only the bystander is left, intact. */
function onlyBystander(t: Test, s: Setup, label: string): void {
  const left = s.node.leftovers();
  const mode = s.bystander.config.dataplane;
  t.same(left, {
    veths: [hostVethName('bystander', 'eth0')],
    podIfaces: ['/var/run/netns/bystander:eth0'],
    attached: [`${mode}:${hostVethName('bystander', 'eth0')}`],
    endpoints: ['bystander/eth0'],
    held: ['bystander/eth0'],
  }, `${label}: nothing leaked, the bystander intact`);
}

for (const mode of ['iptables', 'ebpf'] as const) {
  for (const point of ADD_POINTS) {
    for (const then of ['rerun', 'del', 'gc', 'reconcile'] as Then[]) {
      t.test(`${mode}: kill -9 at ${point}, then ${then}`, async (t) => {
        const s = await setup(mode);
        const crash = crashAt(point);
        const killed = s.node.agent({ faults: crash.faults });
        void killed.agent.add(s.victim);
        await crash.reached;
        killed.kill();
        const intent = s.node.store.snapshot().endpoints['victim/eth0'];
        t.match(intent, { phase: 'creating', owner: { pid: killed.pid } }, 'the intent survived, with its owner');
        const fresh = s.node.agent().agent;
        if (then === 'rerun') {
          const res = await fresh.add(s.victim);
          t.equal(res.ips?.[0]?.address, `${intent!.ip}/16`, 'the rerun got the recorded IP');
          t.match(s.node.store.snapshot().endpoints['victim/eth0'], { phase: 'ready' });
          await fresh.check(s.victim);
          await fresh.del(s.victim);
        } else if (then === 'del') {
          await fresh.del(s.victim);
        } else if (then === 'gc') {
          await fresh.gc(s.victim.config, [{ containerId: 'bystander', ifName: 'eth0' }]);
        } else {
          const report = await fresh.reconcile();
          t.same(report, { removed: ['victim/eth0'], rebuilt: [], strayVeths: [], inProgress: [] }, 'reconcile removed the unfinished ADD');
        }
        onlyBystander(t, s, `${point} then ${then}`);
        await fresh.check(s.bystander);
      });
    }
  }

  for (const point of DEL_POINTS) {
    for (const then of ['rerun', 'gc', 'reconcile'] as Exclude<Then, 'del'>[]) {
      t.test(`${mode}: kill -9 at ${point}, then ${then}`, async (t) => {
        const s = await setup(mode);
        await s.node.agent().agent.add(s.victim);
        const crash = crashAt(point);
        const killed = s.node.agent({ faults: crash.faults });
        void killed.agent.del(s.victim);
        await crash.reached;
        killed.kill();
        t.match(s.node.store.snapshot().endpoints['victim/eth0'], { phase: 'deleting', owner: { pid: killed.pid } }, 'marked deleting, with its owner');
        const fresh = s.node.agent().agent;
        if (then === 'rerun') await fresh.del(s.victim);
        else if (then === 'gc') await fresh.gc(s.victim.config, [{ containerId: 'bystander', ifName: 'eth0' }]);
        else t.same((await fresh.reconcile()).removed, ['victim/eth0'], 'reconcile finished the DEL');
        onlyBystander(t, s, `${point} then ${then}`);
      });
    }
  }
}

t.test('reconcile leaves an unfinished call alone while its process still runs, and that call then finishes', async (t) => {
  for (const point of FAULT_POINTS) {
    const s = await setup('iptables');
    if (point.startsWith('del:')) await s.node.agent().agent.add(s.victim);
    const pause = pauseAt(point); // paused, not killed: the process stays alive
    const busy = s.node.agent({ faults: pause.faults });
    const adding = point.startsWith('add:');
    const running = adding ? busy.agent.add(s.victim) : busy.agent.del(s.victim);
    await pause.reached;
    const report = await s.node.agent().agent.reconcile();
    t.same(report.inProgress, ['victim/eth0'], `${point}: in progress, left alone`);
    t.same(report.removed, [], `${point}: nothing removed`);
    t.ok(s.node.store.snapshot().endpoints['victim/eth0'], `${point}: the record is still there`);
    pause.resume();
    await running;
    if (adding) {
      t.match(s.node.store.snapshot().endpoints['victim/eth0'], { phase: 'ready' }, `${point}: the ADD finished`);
      await s.node.agent().agent.del(s.victim);
    }
    onlyBystander(t, s, `${point}: after the call finished`);
  }
});

t.test('a crash between two fault points of one ADD retried many times never holds two IPs', async (t) => {
  const s = await setup('ebpf');
  for (const point of ADD_POINTS as readonly FaultPoint[]) {
    const crash = crashAt(point);
    const killed = s.node.agent({ faults: crash.faults });
    void killed.agent.add(s.victim);
    await crash.reached;
    killed.kill();
    t.equal(Object.keys(s.node.store.snapshot().ipam.holdings).length, 2, `${point}: bystander + victim`);
  }
  await s.node.agent().agent.add(s.victim);
  await s.node.agent().agent.del(s.victim);
  onlyBystander(t, s, 'after four crashed attempts and a good one');
});
