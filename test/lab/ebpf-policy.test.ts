// NetworkPolicy in the ebpf dataplane with real pods: ping, TCP and UDP
// between pods on the same VM and on another VM, allowed or dropped per the
// policies applied through Dataplane.applyPolicies (driven inside each VM by
// helpers/ebpf-policy-driver until the daemon's policy source is wired in). Also:
// replies of allowed connections pass a default-deny direction, the node
// itself reaches an isolated pod (kubelet probes), and lifting the policy
// opens everything again; a pod attached with a policy never receives what
// it forbids, not even the first packet.
import t from 'tap';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { ping, startUdpSink, startWhoami, tcpWhoami, udpSend, type ToolServer, type UdpSink } from '../../lab/tools/net.js';
import { startChild, stopChild, waitForLine } from '../../lab/children.js';
import type { ChildProcess } from 'node:child_process';
import { MODES, REPO, VmCni, azureConflist, type PodHandle } from './helpers/cni-harness.js';
import type { CompiledRule, DirectionPolicy, EndpointPolicy } from '../../control/policy/types.js';
import type { EndpointPlan, NodeNetwork } from '../../control/dataplane/types.js';

const skip = MODES.includes('ebpf') ? false : 'ebpf mode not selected (VNET_TEST_MODES)';
const DRIVER = path.join(REPO, 'dist', 'test', 'lab', 'helpers', 'ebpf-policy-driver.js');
const OPEN: DirectionPolicy = { isolated: false, rules: [] };
const DENY: DirectionPolicy = { isolated: true, rules: [] };
const FAIL_MS = 1500; // a connection that must not happen: how long to give it (a pass never depends on this)

const rule = (peers: string[] | null, ports: Array<['TCP' | 'UDP', number]> | null, except: string[] = []): CompiledRule => ({
  peers: peers && peers.map((cidr) => ({ family: 'ipv4', cidr, except })),
  ports: ports && ports.map(([protocol, port]) => ({ protocol, port, endPort: port })),
  sources: ['lab/ebpf-policy'],
});

t.test('NetworkPolicy in the ebpf dataplane, real pods on two VMs', { skip }, async (t) => {
  const lab = await Lab.up(defaultSpec(2, 4));
  t.teardown(() => lab.down());
  const cni = { vm1: new VmCni(lab, 'vm1', azureConflist({ cniVersion: '1.0.0', dataplane: 'ebpf' })), vm2: new VmCni(lab, 'vm2', azureConflist({ cniVersion: '1.0.0', dataplane: 'ebpf' })) };
  const a = await cni.vm1.addPod('a');
  const b = await cni.vm1.addPod('b');
  const c = await cni.vm2.addPod('c');
  const servers: ToolServer[] = [];
  t.teardown(async () => {
    for (const s of servers) await s.stop();
    for (const [vm, p] of [['vm1', a], ['vm1', b], ['vm2', c]] as const) await cni[vm].del(p).catch(() => {});
  });
  for (const p of [a, b, c]) {
    servers.push(await startWhoami(p.netns, 80, { name: p.name }), await startWhoami(p.netns, 81, { name: p.name }), await startUdpSink(p.netns, 53, { echo: true }));
  }
  const network = (vm: 'vm1' | 'vm2'): NodeNetwork =>
    (JSON.parse(readFileSync(path.join(lab.vmPaths(vm).varLib, 'state.json'), 'utf8')) as { node: { network: NodeNetwork } }).node.network;
  const apply = async (vm: 'vm1' | 'vm2', pods: Array<[PodHandle, DirectionPolicy, DirectionPolicy]>): Promise<void> => {
    const updates = pods.map(([p, ingress, egress]) => {
      const policy: EndpointPolicy = { family: 'ipv4', address: p.ip, pod: `default/${p.name}`, ingress, egress };
      const rec = Object.values(cni[vm].state().endpoints).find((e) => e.ip === p.ip)!;
      return { hostVeth: rec.hostVeth, policy };
    });
    const res = await lab.execVm(vm, [process.execPath, DRIVER, 'apply'], { input: JSON.stringify({ network: network(vm), updates }), timeoutMs: 60_000 });
    if (res.code !== 0 || !/APPLIED/.test(res.stdout)) throw new Error(`applyPolicies on ${vm} failed: ${res.stderr}`);
  };
  const driver = async (vm: 'vm1' | 'vm2', op: string, extra: Record<string, unknown> = {}): Promise<string> => {
    const res = await lab.execVm(vm, [process.execPath, DRIVER, op], { input: JSON.stringify({ network: network(vm), ...extra }), timeoutMs: 60_000 });
    if (res.code !== 0) throw new Error(`${op} on ${vm} failed: ${res.stderr}`);
    return res.stdout.trim();
  };
  const drops = async (vm: 'vm1' | 'vm2'): Promise<Array<{ ip: string; direction: string; packets: number }>> => {
    const res = await lab.execVm(vm, [process.execPath, DRIVER, 'drops'], { input: JSON.stringify({ network: network(vm) }), timeoutMs: 60_000 });
    return JSON.parse(res.stdout.trim() || '[]') as Array<{ ip: string; direction: string; packets: number }>;
  };
  const tcp = (from: PodHandle, to: PodHandle, port: number, expect: boolean) =>
    tcpWhoami(from.netns, to.ip, port, { timeoutMs: expect ? 5000 : FAIL_MS }).then(
      (who) => who === from.ip,
      () => false,
    );
  const udp = (from: PodHandle, to: PodHandle, expect: boolean) =>
    udpSend(from.netns, to.ip, 53, `q-${from.name}-${Date.now()}`, { awaitReply: true, timeoutMs: expect ? 5000 : FAIL_MS }).then(
      (d) => d?.from === to.ip,
      () => false,
    );
  const icmp = (from: PodHandle, to: PodHandle, expect: boolean) => ping(from.netns, to.ip, { timeoutSec: expect ? 3 : 1 });

  /** Every (what, got, want) in one assertion, so a failure shows the whole table. */
  const matrix = async (label: string, cases: Array<[string, (expect: boolean) => Promise<boolean>, boolean]>): Promise<void> => {
    const got: Record<string, boolean> = {};
    const want: Record<string, boolean> = {};
    for (const [name, probe, expect] of cases) {
      got[name] = await probe(expect);
      want[name] = expect;
    }
    t.same(got, want, label);
  };

  await matrix('no policy: everything reaches everything', [
    ['a->b ping', (e) => icmp(a, b, e), true],
    ['a->b tcp 80', (e) => tcp(a, b, 80, e), true],
    ['a->c tcp 81', (e) => tcp(a, c, 81, e), true],
    ['c->b udp 53', (e) => udp(c, b, e), true],
  ]);

  // b (vm1): ingress only from a on TCP 80, and UDP 53 from the VNet except a. Egress open.
  await apply('vm1', [[b, { isolated: true, rules: [rule([`${a.ip}/32`], [['TCP', 80]]), rule(['10.240.0.0/16'], [['UDP', 53]], [`${a.ip}/32`])] }, OPEN]]);
  await matrix('b isolated for ingress', [
    ['a->b tcp 80 (allowed, same VM)', (e) => tcp(a, b, 80, e), true],
    ['a->b tcp 81 (port not allowed)', (e) => tcp(a, b, 81, e), false],
    ['a->b ping (ICMP not in a ports rule)', (e) => icmp(a, b, e), false],
    ['a->b udp 53 (a is the except)', (e) => udp(a, b, e), false],
    ['c->b udp 53 (allowed, other VM)', (e) => udp(c, b, e), true],
    ['c->b tcp 80 (c is not a)', (e) => tcp(c, b, 80, e), false],
    ['b->a ping (egress open, the reply is established)', (e) => icmp(b, a, e), true],
    ['b->c tcp 80 (reply into isolated b)', (e) => tcp(b, c, 80, e), true],
  ]);
  t.ok(await ping(lab.vmInfo('vm1').netns, b.ip, { timeoutSec: 3 }), 'the node itself still reaches b (kubelet probes)');
  const bDrops = (await drops('vm1')).find((d) => d.ip === b.ip && d.direction === 'ingress');
  t.ok(bDrops && bDrops.packets > 0, `drops counted for b's ingress: ${JSON.stringify(bDrops)}`);

  // c (vm2): default-deny ingress; egress only to b on TCP 80.
  await apply('vm2', [[c, DENY, { isolated: true, rules: [rule([`${b.ip}/32`], [['TCP', 80]])] }]]);
  await matrix('c isolated both ways, on the other VM', [
    ['c->b tcp 81 (c egress: not allowed)', (e) => tcp(c, b, 81, e), false],
    ['c->a ping (c egress)', (e) => icmp(c, a, e), false],
    ['a->c tcp 80 (c ingress: default deny)', (e) => tcp(a, c, 80, e), false],
    ['a->c udp 53 (c ingress)', (e) => udp(a, c, e), false],
  ]);
  // c->b:80: c's egress allows it, b's ingress (from a only) does not; allow c there too and the reply comes back into c.
  await apply('vm1', [[b, { isolated: true, rules: [rule([`${a.ip}/32`, `${c.ip}/32`], [['TCP', 80]])] }, OPEN]]);
  await matrix('both ends allow c->b:80', [
    ['c->b tcp 80 (both allow; reply into default-deny c)', (e) => tcp(c, b, 80, e), true],
    ['a->b tcp 80 (still allowed)', (e) => tcp(a, b, 80, e), true],
  ]);

  // Lifting every policy opens everything again.
  await apply('vm1', [[b, OPEN, OPEN]]);
  await apply('vm2', [[c, OPEN, OPEN]]);
  await matrix('policies lifted', [
    ['a->b tcp 81', (e) => tcp(a, b, 81, e), true],
    ['a->c tcp 80', (e) => tcp(a, c, 80, e), true],
    ['c->a ping', (e) => icmp(c, a, e), true],
    ['a->b udp 53', (e) => udp(a, b, e), true],
  ]);

  // Attach with a policy (no window): a and c send to the address before the pod exists and all through its
  // attach; only b may reach it.
  const used = new Set(Object.values(cni.vm1.state().endpoints).map((e) => e.ip));
  const node1 = lab.vmInfo('vm1');
  const ip = node1.secondaryIps.find((x) => !used.has(x))!;
  const netns = await lab.addPodNetns('vm1', 'e');
  const sink = await startUdpSink(netns, 7100);
  servers.push(sink);
  const plan: EndpointPlan = {
    containerId: 'drv-e', ifName: 'eth0', netns, ip, prefixLength: node1.prefixLen, gateway: node1.gateway,
    hostVeth: 'azvdrve', hostMac: '02:00:00:00:0e:01', podMac: '02:00:00:00:0e:02', mtu: 1500, freshMacs: true,
    policy: { family: 'ipv4', address: ip, pod: 'default/e', ingress: { isolated: true, rules: [rule([`${b.ip}/32`], null)] }, egress: OPEN },
  };
  const senders = [sender(a, ip, 7100, 'a', 600), sender(c, ip, 7100, 'c', 600)];
  // Both waits registered at once, before any output: a line printed before its waiter would be missed.
  const ready = senders.map((s) => waitForLine(s, /^STARTED/, 10_000, 'sender'));
  const done = senders.map((s) => waitForLine(s, /^DONE/, 60_000, 'sender'));
  try {
    await Promise.all(ready);
    t.match(await driver('vm1', 'attach', { plan }), /ATTACHED/, 'attachEndpoint with a policy');
    await Promise.all(done);
  } finally {
    for (const s of senders) await stopChild(s, 500);
    await Promise.allSettled([...ready, ...done]);
  }
  let through = false;
  for (let i = 0; i < 10 && !through; i++) {
    await udpSend(b.netns, ip, 7100, `b-${i}`).catch(() => undefined);
    through = await waitFor(() => countFrom(sink, 'b') > 0, 1000);
  }
  t.ok(through, 'b, the allowed peer, gets through');
  t.same([countFrom(sink, 'a'), countFrom(sink, 'c')], [0, 0], "nothing of a's or c's 600 datagrams reached the pod");
  t.match(await driver('vm1', 'detach', { plan }), /DETACHED/, 'detachEndpoint');
  const state = JSON.parse(await driver('vm1', 'state')) as { endpoints: Record<string, unknown> };
  t.notOk(ip in state.endpoints, 'detach removed its policy');
});

function sender(from: PodHandle, ip: string, port: number, tag: string, count: number): ChildProcess {
  return startChild(['nsenter', `--net=${from.netns}`, '--', process.execPath, '-e', `
    const s = require('dgram').createSocket('udp4'); let i = 0; console.log('STARTED');
    const iv = setInterval(() => { s.send(${JSON.stringify(tag)} + '-' + (i++), ${port}, ${JSON.stringify(ip)}); if (i === ${count}) { clearInterval(iv); setTimeout(() => { console.log('DONE'); process.exit(0); }, 200); } }, 5);`]);
}

function countFrom(sink: UdpSink, tag: string): number {
  return new Set(sink.received.filter((d) => d.payload.startsWith(`${tag}-`)).map((d) => d.payload)).size;
}

async function waitFor(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return cond();
}
