// NetworkPolicy in the iptables dataplane, with real pods in lab VMs: compiled
// policies applied through the dataplane (test/lab/helpers/policy-driver.ts
// runs applyPolicies inside the VM, as the daemon will), and real packets
// between pods on one VM (bridged: br_netfilter) and across VMs. vm1 uses the
// nft backend, vm2 the legacy one (a kube-proxy hint chain makes the backend
// detection pick it, as on a node whose kube-proxy runs iptables-legacy).
// A "blocked" verdict is a failed attempt AND a risen DROP counter, so it never
// rests on a timeout alone.
import t from 'tap';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { startChild, stopChild, waitForLine } from '../../lab/children.js';
import { ping, startUdpSink, startWhoami, tcpWhoami, udpSend, type ToolServer, type UdpSink } from '../../lab/tools/net.js';
import { REPO, MODES, VmCni, azureConflist, type PodHandle } from './helpers/cni-harness.js';
import type { CompiledRule, EndpointPolicy, PeerCidr, PortRange } from '../../control/policy/types.js';
import type { EndpointPlan } from '../../control/dataplane/types.js';

const DRIVER = path.join(REPO, 'dist', 'test', 'lab', 'helpers', 'policy-driver.js');
const peer = (cidr: string, except: string[] = []): PeerCidr => ({ family: 'ipv4', cidr, except });
const tcp = (port: number, endPort = port): PortRange => ({ protocol: 'TCP', port, endPort });
const udp = (port: number, endPort = port): PortRange => ({ protocol: 'UDP', port, endPort });
const rule = (peers: PeerCidr[] | null, ports: PortRange[] | null): CompiledRule => ({ peers, ports, sources: ['test/p'] });
const OPEN = { isolated: false, rules: [] };
const DENY = { isolated: true, rules: [] };

t.test('NetworkPolicy in iptables mode', { skip: !MODES.includes('iptables') && 'VNET_TEST_MODES excludes iptables' }, async (t) => {
  const lab = await Lab.up(defaultSpec(2, 8));
  t.teardown(() => lab.down());
  const servers: ToolServer[] = [];
  t.teardown(async () => {
    for (const s of servers) await s.stop();
  });
  // vm2 follows a legacy-iptables kube-proxy (KUBE-IPTABLES-HINT is what kube-proxy's wrapper looks for).
  await lab.execVm('vm2', ['iptables-legacy', '-t', 'mangle', '-N', 'KUBE-IPTABLES-HINT']);
  const cni: Record<string, VmCni> = {
    vm1: new VmCni(lab, 'vm1', azureConflist({ cniVersion: '1.0.0' })),
    vm2: new VmCni(lab, 'vm2', azureConflist({ cniVersion: '1.0.0' })),
  };
  const save: Record<string, string> = { vm1: 'iptables-nft-save', vm2: 'iptables-legacy-save' };
  const vmOf = new Map<PodHandle, string>();
  const add = async (vm: string, name: string): Promise<PodHandle> => {
    const p = await cni[vm]!.addPod(name);
    vmOf.set(p, vm);
    return p;
  };
  const a = await add('vm1', 'a');
  const b = await add('vm1', 'b');
  const c = await add('vm1', 'c');
  const d = await add('vm2', 'd');
  const veth = (p: PodHandle): string => Object.values(cni[vmOf.get(p)!]!.state().endpoints).find((e) => e.ip === p.ip)!.hostVeth;
  for (const [p, ports] of [[a, [80]], [b, [80, 8050, 8200]], [c, [80]], [d, [80]]] as const) {
    for (const port of ports) servers.push(await startWhoami(p.netns, port, { name: p.name }));
  }
  const node1 = lab.vmInfo('vm1');

  const policyOf = (p: PodHandle, ingress: EndpointPolicy['ingress'], egress: EndpointPolicy['egress'] = OPEN): EndpointPolicy =>
    ({ family: 'ipv4', address: p.ip, pod: `test/${p.name}`, ingress, egress });
  const applyMs: number[] = [];
  const driver = async (vm: string, req: unknown): Promise<{ ok: boolean; ms?: number; error?: string }> => {
    const res = await lab.execVm(vm, [process.execPath, DRIVER], { input: JSON.stringify(req), timeoutMs: 120_000 });
    const line = res.stdout.trim().split('\n').pop() ?? '';
    try {
      return JSON.parse(line) as { ok: boolean; ms?: number; error?: string };
    } catch {
      return { ok: false, error: `driver: ${res.stderr.trim().slice(0, 1000)}` };
    }
  };
  const apply = async (...pods: [PodHandle, EndpointPolicy][]): Promise<void> => {
    const vm = vmOf.get(pods[0]![0])!;
    const res = await driver(vm, { op: 'apply', updates: pods.map(([p, policy]) => ({ hostVeth: veth(p), policy })) });
    if (!res.ok) throw new Error(`applyPolicies on ${vm}: ${res.error}`);
    applyMs.push(res.ms!);
  };
  const clear = (...pods: PodHandle[]) => apply(...pods.map((p): [PodHandle, EndpointPolicy] => [p, policyOf(p, OPEN)]));

  /** Packet counters of the DROP rule closing a policy chain. */
  const drops = async (vm: string, chain: string): Promise<number> => {
    const res = await lab.execVm(vm, [save[vm]!, '-c', '-t', 'filter']);
    const m = new RegExp(`^\\[(\\d+):\\d+\\] -A ${chain} .*-j DROP$`, 'm').exec(res.stdout);
    return m ? Number(m[1]) : -1;
  };
  const tcpOk = (from: PodHandle | string, to: PodHandle, port = 80) =>
    tcpWhoami(typeof from === 'string' ? from : from.netns, to.ip, port, { timeoutMs: 10_000 }).then(() => true, () => false);
  /** The attempt fails and the chain's DROP counter rises. */
  const blocked = async (attempt: () => Promise<boolean>, vm: string, chain: string): Promise<boolean> => {
    const before = await drops(vm, chain);
    const got = await attempt();
    const after = await drops(vm, chain);
    return !got && before >= 0 && after > before;
  };
  const tcpBlocked = (from: PodHandle, to: PodHandle, port: number, chain: string) =>
    blocked(() => tcpWhoami(from.netns, to.ip, port, { timeoutMs: 1500 }).then(() => true, () => false), vmOf.get(to)!, chain);
  const pingBlocked = (from: PodHandle, to: PodHandle, chain: string, vm = vmOf.get(to)!) => blocked(() => ping(from.netns, to.ip), vm, chain);
  const ingressChain = (p: PodHandle) => `VNET-POLI-${veth(p)}`;
  const egressChain = (p: PodHandle) => `VNET-POLE-${veth(p)}`;

  t.test('default deny ingress: pods on the same VM and on another VM are dropped, the node is not', async (t) => {
    // The sysctl is per netns: policy turns it on where it is off.
    await lab.execVm('vm1', ['sh', '-c', 'echo 0 > /proc/sys/net/bridge/bridge-nf-call-iptables']);
    await apply([b, policyOf(b, DENY)]);
    t.equal((await lab.execVm('vm1', ['cat', '/proc/sys/net/bridge/bridge-nf-call-iptables'])).stdout.trim(), '1', 'bridge-nf-call-iptables=1 in the VM');
    t.ok(await tcpBlocked(a, b, 80, ingressChain(b)), 'a -> b TCP (same VM, bridged) dropped and counted');
    t.ok(await pingBlocked(a, b, ingressChain(b)), 'a -> b ping dropped');
    t.ok(await tcpBlocked(d, b, 80, ingressChain(b)), 'd (vm2) -> b TCP dropped');
    t.ok(await ping(node1.netns, b.ip), 'the node pings b (kubelet probes: OUTPUT, not FORWARD)');
    t.ok(await tcpOk(node1.netns, b), 'the node reaches b over TCP');
    t.ok(await tcpOk(b, a), 'b -> a still works: egress is not isolated, the replies are stateful');
    t.ok(await tcpOk(a, c), 'a -> c untouched');
    t.same((await driver('vm1', { op: 'check', plan: { ...planFor(b), policy: policyOf(b, DENY) } })).ok, true, 'CHECK finds the chain it expects');
    const wrong = await driver('vm1', { op: 'check', plan: { ...planFor(b), policy: policyOf(b, { isolated: true, rules: [rule(null, [tcp(80)])] }) } });
    t.match(wrong.error, /VNET-POLI-.* holds 1 rule\(s\), not the 2/, 'CHECK names a chain that differs from the policy');
    await clear(b);
    t.ok(await tcpOk(a, b), 'cleared: a -> b again');
  });

  t.test('port ranges and protocols; a peer on another VM by its /32', async (t) => {
    await apply([b, policyOf(b, { isolated: true, rules: [rule([peer(a.ip)], [tcp(8000, 8100)]), rule([peer(`${d.ip}/32`)], null)] })]);
    t.ok(await tcpOk(a, b, 8050), 'a -> b:8050 (inside 8000-8100) allowed');
    t.ok(await tcpBlocked(a, b, 8200, ingressChain(b)), 'a -> b:8200 dropped');
    t.ok(await tcpBlocked(a, b, 80, ingressChain(b)), 'a -> b:80 dropped');
    const sink = await startUdpSink(b.netns, 8060, { echo: true });
    servers.push(sink);
    t.ok(await blocked(() => udpSend(a.netns, b.ip, 8060, 'u1', { awaitReply: true, timeoutMs: 1500 }).then(() => true, () => false), 'vm1', ingressChain(b)), 'UDP to 8060 dropped: the range is TCP only');
    t.ok(await tcpBlocked(c, b, 8050, ingressChain(b)), 'c -> b:8050 dropped: c is not a peer');
    t.ok(await tcpOk(d, b, 80), 'd (vm2) -> b:80 allowed: ports null = any');
    t.ok(await ping(d.netns, b.ip, { timeoutSec: 5 }), 'd -> b ping allowed (ICMP is included in "any")');
    await clear(b);
  });

  t.test('ipBlock except on egress', async (t) => {
    await apply([a, policyOf(a, OPEN, { isolated: true, rules: [rule([peer('10.240.0.0/16', [`${c.ip}/32`])], null)] })]);
    t.ok(await tcpOk(a, b), 'a -> b allowed (inside the block)');
    t.ok(await tcpOk(a, d), 'a -> d (vm2) allowed');
    t.ok(await tcpBlocked(a, c, 80, egressChain(a)), 'a -> c dropped: c is the except');
    t.ok(await blocked(() => ping(a.netns, c.ip), 'vm1', egressChain(a)), 'a -> c ping dropped');
    t.ok(await tcpOk(c, a), 'c -> a allowed: only a\'s egress is isolated, and the reply is stateful');
    const sets = await lab.execVm('vm1', ['ipset', 'list']);
    t.match(sets.stdout, new RegExp(`${c.ip.replaceAll('.', '\\.')} nomatch`), 'the except is a nomatch entry');
    await clear(a);
  });

  t.test('stateful: replies of allowed connections pass a deny-all direction', async (t) => {
    const echo = await startUdpSink(a.netns, 5353, { echo: true });
    servers.push(echo);
    await apply([b, policyOf(b, DENY, { isolated: true, rules: [rule([peer(a.ip)], [tcp(80), udp(5353)])] })]);
    t.ok(await tcpOk(b, a), 'b -> a:80 allowed, and its replies come in through b\'s default-deny ingress');
    const reply = await udpSend(b.netns, a.ip, 5353, 'hello', { awaitReply: true, timeoutMs: 10_000 }).catch(() => undefined);
    t.equal(reply?.payload, 'hello', 'UDP reply from a reaches b');
    t.ok(await tcpBlocked(a, b, 80, ingressChain(b)), 'a -> b:80 (a new connection) dropped');
    t.ok(await blocked(() => tcpWhoami(b.netns, d.ip, 80, { timeoutMs: 1500 }).then(() => true, () => false), 'vm1', egressChain(b)), 'b -> d dropped by b\'s egress');
    await clear(b);
  });

  t.test('legacy backend (vm2): the same chains, in iptables-legacy', async (t) => {
    await apply([d, policyOf(d, { isolated: true, rules: [rule([peer(a.ip)], [tcp(80)])] })]);
    t.ok(await tcpOk(a, d), 'a -> d allowed');
    t.ok(await tcpBlocked(c, d, 80, ingressChain(d)), 'c -> d dropped');
    const nft = await lab.execVm('vm2', ['sh', '-c', 'iptables-nft-save -t filter | grep -c VNET-POL || true']);
    t.equal(nft.stdout.trim(), '0', 'nothing in the nft backend of vm2');
    await clear(d);
    t.ok(await tcpOk(c, d), 'cleared: c -> d');
  });

  t.test('an update never opens a window: allowed flows lose nothing, denied flows get nothing', async (t) => {
    const sink = await startUdpSink(b.netns, 7000);
    servers.push(sink);
    const COUNT = 400;
    // a is allowed by every version, c by none; the versions differ in another peer, so each
    // update creates new sets, swaps the chain and destroys the old sets while packets flow.
    const version = (i: number) => policyOf(b, { isolated: true, rules: [rule([peer(a.ip), peer(`10.240.${200 + i}.0/24`)], [udp(7000), tcp(80)])] });
    await apply([b, version(0)]);
    const senders = [sender(a, b.ip, 7000, 'a', COUNT), sender(c, b.ip, 7000, 'c', COUNT)];
    try {
      const done = senders.map((s) => waitForLine(s, /^DONE/, 60_000, 'sender'));
      await Promise.all(senders.map((s) => waitForLine(s, /^STARTED/, 10_000, 'sender')));
      for (let i = 1; i <= 6; i++) await apply([b, version(i)]);
      await Promise.all(done);
    } finally {
      for (const s of senders) await stopChild(s, 500);
    }
    await waitFor(() => countFrom(sink, 'a') === COUNT, 10_000);
    t.equal(countFrom(sink, 'a'), COUNT, `all ${COUNT} datagrams of the allowed flow arrived across 6 updates`);
    t.equal(countFrom(sink, 'c'), 0, 'none of the denied flow did');
    const sets = await lab.execVm('vm1', ['sh', '-c', 'ipset list -n | grep -c VNET-P4 || true']);
    t.equal(sets.stdout.trim(), '1', 'the replaced sets were destroyed: only the current one is left');
    await clear(b);
  });

  t.test('attach with a policy: the pod never receives what it forbids, from its first packet', async (t) => {
    const used = new Set(Object.values(cni.vm1!.state().endpoints).map((e) => e.ip));
    const ip = node1.secondaryIps.find((x) => !used.has(x))!;
    const netns = await lab.addPodNetns('vm1', 'e');
    const sink = await startUdpSink(netns, 7100);
    servers.push(sink);
    const e = { name: 'e', netns, ip, containerId: 'drv-e', ifName: 'eth0', result: {} } satisfies PodHandle;
    const plan: EndpointPlan = {
      containerId: 'drv-e', ifName: 'eth0', netns, ip, prefixLength: node1.prefixLen, gateway: node1.gateway,
      hostVeth: 'azvdrve', hostMac: '02:00:00:00:0e:01', podMac: '02:00:00:00:0e:02', mtu: 1500, freshMacs: true,
      policy: policyOf(e, { isolated: true, rules: [rule([peer(b.ip)], null)] }),
    };
    // c sends to the address before the pod exists and all through its attach.
    const s = sender(c, ip, 7100, 'c', 300);
    try {
      const done = waitForLine(s, /^DONE/, 60_000, 'sender');
      await waitForLine(s, /^STARTED/, 10_000, 'sender');
      const res = await driver('vm1', { op: 'attach', plan });
      t.ok(res.ok, `attachEndpoint with a policy: ${res.error ?? `${res.ms?.toFixed(0)} ms`}`);
      await done;
    } finally {
      await stopChild(s, 500);
    }
    let through = false;
    for (let i = 0; i < 10 && !through; i++) {
      await udpSend(b.netns, ip, 7100, `b-${i}`).catch(() => undefined);
      through = await waitFor(() => countFrom(sink, 'b') > 0, 1000);
    }
    t.ok(through, 'b, the allowed peer, gets through');
    t.equal(countFrom(sink, 'c'), 0, 'nothing of c\'s 300 datagrams reached the pod');
    t.ok((await drops('vm1', 'VNET-POLI-azvdrve')) > 0, 'they were dropped by its chain');
    const det = await driver('vm1', { op: 'detach', plan });
    t.ok(det.ok, `detach: ${det.error ?? 'ok'}`);
    const left = await lab.execVm('vm1', ['sh', '-c', 'iptables-nft-save -t filter | grep -c azvdrve || true']);
    t.equal(left.stdout.trim(), '0', 'detach removed its chains and dispatch');
  });

  t.test('DEL removes the endpoint\'s chains and sets; the last DEL removes everything', async (t) => {
    await apply([a, policyOf(a, DENY, { isolated: true, rules: [rule([peer(b.ip)], null)] })], [c, policyOf(c, { isolated: true, rules: [rule([peer(d.ip)], [tcp(80)])] })]);
    await cni.vm1!.del(a);
    const after = await lab.execVm('vm1', ['sh', '-c', `iptables-nft-save -t filter | grep -c -- '-j VNET-POL[IE]-' ; ipset list -n | grep -c VNET-P4 || true`]);
    t.same(after.stdout.trim().split('\n'), ['1', '1'], 'a\'s chains and set are gone: one dispatch rule and one set (c\'s) are left');
    const check = await driver('vm1', { op: 'check', plan: { ...planFor(c), policy: policyOf(c, { isolated: true, rules: [rule([peer(d.ip)], [tcp(80)])] }) } });
    t.ok(check.ok, `c's chain is intact: ${check.error ?? 'CHECK passes'}`);
    t.ok(await tcpBlocked(b, c, 80, ingressChain(c)), 'c is still enforced after a left');
    for (const p of [b, c]) await cni.vm1!.del(p);
    await cni.vm2!.del(d);
    for (const vm of ['vm1', 'vm2']) {
      const rest = await lab.execVm(vm, ['sh', '-c', `${save[vm]} | grep -c VNET- ; ipset list -n | grep -c VNET- || true`]);
      t.same(rest.stdout.trim().split('\n'), ['0', '0'], `${vm}: no chain and no set of ours left`);
    }
  });

  t.test('mode transparent (routed pods, no bridge): egress by the pod veth and ingress by address hold', async (t) => {
    // vm1 drained above, so it switches to mode transparent cleanly.
    cni.vm1!.setConflist(azureConflist({ cniVersion: '1.0.0', mode: 'transparent' }));
    const e = await add('vm1', 'te');
    const f = await add('vm1', 'tf');
    for (const p of [e, f]) servers.push(await startWhoami(p.netns, 80, { name: p.name }));
    t.notMatch((await lab.execVm('vm1', ['ip', '-o', 'link', 'show', 'eth0'])).stdout, /master/, 'eth0 is not bridged');
    t.ok(await tcpOk(e, f), 'e -> f before any policy');
    await apply([e, policyOf(e, OPEN, DENY)]);
    t.ok(await tcpBlocked(e, f, 80, egressChain(e)), 'e -> f dropped by e\'s egress chain (routed: matched by -i)');
    t.ok(await tcpOk(f, e), 'f -> e allowed: only e\'s egress is isolated, replies are stateful');
    await apply([e, policyOf(e, OPEN)], [f, policyOf(f, DENY)]);
    t.ok(await tcpBlocked(e, f, 80, ingressChain(f)), 'e -> f dropped by f\'s ingress chain');
    t.ok(await tcpOk(node1.netns, f), 'the node still reaches f');
    for (const p of [e, f]) await cni.vm1!.del(p);
    const rest = await lab.execVm('vm1', ['sh', '-c', 'iptables-nft-save | grep -c VNET- ; ipset list -n | grep -c VNET- || true']);
    t.same(rest.stdout.trim().split('\n'), ['0', '0'], 'no chain and no set of ours left');
  });

  t.test('apply latency (informational)', async (t) => {
    const sorted = [...applyMs].sort((x, y) => x - y);
    t.comment(`applyPolicies inside the VM: n=${sorted.length}, median ${sorted[Math.floor(sorted.length / 2)]?.toFixed(1)} ms, max ${sorted[sorted.length - 1]?.toFixed(1)} ms`);
    t.pass();
  });

  function planFor(p: PodHandle): EndpointPlan {
    const rec = Object.values(cni[vmOf.get(p)!]!.state().endpoints).find((e) => e.ip === p.ip)! as unknown as EndpointPlan;
    return { containerId: rec.containerId, ifName: rec.ifName, netns: rec.netns, ip: rec.ip, prefixLength: rec.prefixLength, gateway: rec.gateway, hostVeth: rec.hostVeth, hostMac: rec.hostMac, podMac: rec.podMac, mtu: rec.mtu };
  }
});

/** A bounded UDP sender in a pod: `count` datagrams "<tag>-<i>", one every 5 ms; prints STARTED and DONE. */
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
