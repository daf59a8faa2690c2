// NetworkPolicy in each dataplane (VNET_TEST_MODES), the same tests against
// both: compiled policies applied through Dataplane.applyPolicies inside the
// lab VMs (test/lab/helpers/policy-lab.ts drives each dataplane's driver, as
// the daemon does), and real packets between pods on one VM (iptables:
// bridged, br_netfilter) and across VMs: ping, TCP and UDP allowed or dropped,
// ports, ranges and protocols, ipBlock excepts, replies of allowed connections
// through a default-deny direction, the node itself reaching an isolated pod
// (kubelet probes), updates that never open a window, a pod attached with a
// policy that never receives what it forbids (not even its first packet), DEL
// taking the pod's policy with it. A "blocked" verdict is a failed attempt AND
// a risen drop counter of that pod's direction (iptables: the DROP closing its
// chain; ebpf: vnet_pol_drops), so it never rests on a timeout alone.
// Dataplane-specific parts are small and marked: iptables (vm2 on the legacy
// backend, CHECK, ipsets, chains, mode transparent), ebpf (the policy maps).
// The dataplanes run at the same time, one lab each.
import t, { type Test } from 'tap';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { stopChild, waitForLine } from '../../lab/children.js';
import { ping, startUdpSink, startWhoami, tcpWhoami, udpSend, type ToolServer } from '../../lab/tools/net.js';
import { MODES, VmCni, azureConflist, type Mode, type PodHandle } from './helpers/cni-harness.js';
import { PolicyLab, countFrom, sender, waitFor, type Direction } from './helpers/policy-lab.js';
import type { CompiledRule, DirectionPolicy, EndpointPolicy, PeerCidr, PortRange } from '../../control/policy/types.js';
import type { EndpointPlan } from '../../control/dataplane/types.js';

const peer = (cidr: string, except: string[] = []): PeerCidr => ({ family: 'ipv4', cidr, except });
const tcp = (port: number, endPort = port): PortRange => ({ protocol: 'TCP', port, endPort });
const udp = (port: number, endPort = port): PortRange => ({ protocol: 'UDP', port, endPort });
const rule = (peers: PeerCidr[] | null, ports: PortRange[] | null): CompiledRule => ({ peers, ports, sources: ['test/p'] });
const OPEN: DirectionPolicy = { isolated: false, rules: [] };
const DENY: DirectionPolicy = { isolated: true, rules: [] };
const FAIL_MS = 1500; // a connection that must not happen: how long to give it (a pass never depends on this)

t.test('NetworkPolicy in each dataplane', { jobs: MODES.length }, async (t) => {
  for (const mode of MODES) t.test(`${mode} mode, real pods on two VMs`, (t) => policyTests(t, mode));
});

async function policyTests(t: Test, mode: Mode): Promise<void> {
  const lab = await Lab.up(defaultSpec(2, 8));
  t.teardown(() => lab.down());
  const servers: ToolServer[] = [];
  t.teardown(async () => {
    for (const s of servers) await s.stop();
  });
  const conflist = (extra: { mode?: 'transparent' } = {}) => azureConflist({ cniVersion: '1.0.0', dataplane: mode, ...extra });
  const pl = new PolicyLab(lab, mode, { vm1: new VmCni(lab, 'vm1', conflist()), vm2: new VmCni(lab, 'vm2', conflist()) });
  if (mode === 'iptables') {
    // vm2 follows a legacy-iptables kube-proxy (KUBE-IPTABLES-HINT is what kube-proxy's wrapper looks for).
    await lab.execVm('vm2', ['iptables-legacy', '-t', 'mangle', '-N', 'KUBE-IPTABLES-HINT']);
    pl.legacyVm2 = true;
  }
  const a = await pl.add('vm1', 'a');
  const b = await pl.add('vm1', 'b');
  const c = await pl.add('vm1', 'c');
  const d = await pl.add('vm2', 'd');
  for (const [p, ports] of [[a, [80, 81]], [b, [80, 81, 8050, 8200]], [c, [80]], [d, [80, 81]]] as const) {
    for (const port of ports) servers.push(await startWhoami(p.netns, port, { name: p.name }));
  }
  for (const p of [a, b, d]) servers.push(await startUdpSink(p.netns, 53, { echo: true }));
  const node1 = lab.vmInfo('vm1');

  const policyOf = (p: PodHandle, ingress: DirectionPolicy, egress: DirectionPolicy = OPEN): EndpointPolicy =>
    ({ family: 'ipv4', address: p.ip, pod: `test/${p.name}`, ingress, egress });
  const apply = (...pods: [PodHandle, EndpointPolicy][]) => pl.apply(...pods);
  const clear = (...pods: PodHandle[]) => apply(...pods.map((p): [PodHandle, EndpointPolicy] => [p, policyOf(p, OPEN)]));

  // Probes. An allowed one has time (and a TCP answer must name the client: no SNAT between pods);
  // a blocked one is checked against the drop counter of the direction that must drop it.
  const tcpOk = (from: PodHandle | string, to: PodHandle, port = 80) =>
    tcpWhoami(typeof from === 'string' ? from : from.netns, to.ip, port, { timeoutMs: 10_000 }).then((who) => typeof from === 'string' || who === from.ip, () => false);
  const tcpTry = (from: PodHandle, to: PodHandle, port: number) => tcpWhoami(from.netns, to.ip, port, { timeoutMs: FAIL_MS }).then(() => true, () => false);
  const udpOk = (from: PodHandle, to: PodHandle, port = 53, timeoutMs = 5000) =>
    udpSend(from.netns, to.ip, port, `q-${from.name}-${Date.now()}`, { awaitReply: true, timeoutMs }).then((r) => r?.from === to.ip, () => false);
  const pingTry = (from: PodHandle, to: PodHandle) => ping(from.netns, to.ip, { count: 1, timeoutSec: 2 });
  /** `dropper`'s `direction` drops it (default: the destination's ingress). */
  const tcpBlocked = (from: PodHandle, to: PodHandle, port: number, dropper = to, direction: Direction = 'ingress') =>
    pl.blocked(() => tcpTry(from, to, port), dropper, direction);
  const pingBlocked = (from: PodHandle, to: PodHandle, dropper = to, direction: Direction = 'ingress') => pl.blocked(() => pingTry(from, to), dropper, direction);

  /** Every (what, got, want) in one assertion, probed at once, so a failure shows the whole table. */
  const matrix = async (t: Test, label: string, cases: Array<[string, (expect: boolean) => Promise<boolean>, boolean]>): Promise<void> => {
    const got: Record<string, boolean> = {};
    const want: Record<string, boolean> = {};
    await Promise.all(cases.map(async ([name, probe, expect]) => {
      got[name] = await probe(expect);
      want[name] = expect;
    }));
    t.same(got, want, label);
  };
  const mtcp = (from: PodHandle, to: PodHandle, port: number) => (expect: boolean) => (expect ? tcpOk(from, to, port) : tcpTry(from, to, port));
  const mudp = (from: PodHandle, to: PodHandle) => (expect: boolean) => udpOk(from, to, 53, expect ? 5000 : FAIL_MS);
  const mping = (from: PodHandle, to: PodHandle) => (expect: boolean) => ping(from.netns, to.ip, { count: 1, timeoutSec: expect ? 3 : 1 });

  t.test('no policy: everything reaches everything', async (t) => {
    await matrix(t, 'no policy: everything reaches everything', [
      ['a->b ping', mping(a, b), true],
      ['a->b tcp 80', mtcp(a, b, 80), true],
      ['a->d tcp 81', mtcp(a, d, 81), true],
      ['d->b udp 53', mudp(d, b), true],
    ]);
  });

  t.test('default deny ingress: pods on the same VM and on another VM are dropped, the node is not', async (t) => {
    if (mode === 'iptables') {
      // The sysctl is per netns: policy turns it on where it is off.
      await lab.execVm('vm1', ['sh', '-c', 'echo 0 > /proc/sys/net/bridge/bridge-nf-call-iptables']);
    }
    await apply([b, policyOf(b, DENY)]);
    if (mode === 'iptables') t.equal((await lab.execVm('vm1', ['cat', '/proc/sys/net/bridge/bridge-nf-call-iptables'])).stdout.trim(), '1', 'bridge-nf-call-iptables=1 in the VM');
    t.ok(await tcpBlocked(a, b, 80), 'a -> b TCP (same VM) dropped and counted');
    t.ok(await pingBlocked(a, b), 'a -> b ping dropped');
    t.ok(await tcpBlocked(d, b, 80), 'd (vm2) -> b TCP dropped');
    t.ok(await ping(node1.netns, b.ip), 'the node pings b (kubelet probes)');
    t.ok(await tcpOk(node1.netns, b), 'the node reaches b over TCP');
    t.ok(await tcpOk(b, a), 'b -> a still works: egress is not isolated, the replies are stateful');
    t.ok(await tcpOk(a, c), 'a -> c untouched');
    if (mode === 'iptables') {
      t.same((await pl.driver('vm1', 'check', { plan: { ...pl.plan(b), policy: policyOf(b, DENY) } })).ok, true, 'CHECK finds the chain it expects');
      const wrong = await pl.driver('vm1', 'check', { plan: { ...pl.plan(b), policy: policyOf(b, { isolated: true, rules: [rule(null, [tcp(80)])] }) } });
      t.match(wrong.error, /VNET-POLI-.* holds 1 rule\(s\), not the 2/, 'CHECK names a chain that differs from the policy');
    }
    await clear(b);
    t.ok(await tcpOk(a, b), 'cleared: a -> b again');
  });

  t.test('b isolated for ingress: one peer and port, a block with an except, a peer on the other VM', async (t) => {
    await apply([b, policyOf(b, { isolated: true, rules: [rule([peer(`${a.ip}/32`)], [tcp(80)]), rule([peer('10.240.0.0/16', [`${a.ip}/32`])], [udp(53)])] })]);
    const before = await pl.drops(b, 'ingress');
    await matrix(t, 'b isolated for ingress', [
      ['a->b tcp 80 (allowed, same VM)', mtcp(a, b, 80), true],
      ['a->b tcp 81 (port not allowed)', mtcp(a, b, 81), false],
      ['a->b ping (ICMP not in a ports rule)', mping(a, b), false],
      ['a->b udp 53 (a is the except)', mudp(a, b), false],
      ['d->b udp 53 (allowed, other VM)', mudp(d, b), true],
      ['d->b tcp 80 (d is not a)', mtcp(d, b, 80), false],
      ['b->a ping (egress open, the reply is established)', mping(b, a), true],
      ['b->d tcp 80 (reply into isolated b)', mtcp(b, d, 80), true],
    ]);
    t.ok(await ping(node1.netns, b.ip, { timeoutSec: 3 }), 'the node itself still reaches b (kubelet probes)');
    const after = await pl.drops(b, 'ingress');
    t.ok(after > before, `drops counted for b's ingress: ${before} -> ${after}`);
  });

  t.test('isolated both ways on the other VM; a connection needs both ends to allow it', async (t) => {
    // d (vm2): default-deny ingress; egress only to b on TCP 80.
    await apply([d, policyOf(d, DENY, { isolated: true, rules: [rule([peer(`${b.ip}/32`)], [tcp(80)])] })]);
    await matrix(t, 'd isolated both ways, on the other VM', [
      ['d->b tcp 81 (d egress: not allowed)', mtcp(d, b, 81), false],
      ['d->a ping (d egress)', mping(d, a), false],
      ['a->d tcp 80 (d ingress: default deny)', mtcp(a, d, 80), false],
      ['a->d udp 53 (d ingress)', mudp(a, d), false],
    ]);
    // d->b:80: d's egress allows it, b's ingress (from a only) does not; allow d there too and the reply comes back into d.
    await apply([b, policyOf(b, { isolated: true, rules: [rule([peer(`${a.ip}/32`), peer(`${d.ip}/32`)], [tcp(80)])] })]);
    await matrix(t, 'both ends allow d->b:80', [
      ['d->b tcp 80 (both allow; reply into default-deny d)', mtcp(d, b, 80), true],
      ['a->b tcp 80 (still allowed)', mtcp(a, b, 80), true],
    ]);
  });

  t.test('lifting every policy opens everything again', async (t) => {
    await clear(b);
    await clear(d);
    await matrix(t, 'policies lifted', [
      ['a->b tcp 81', mtcp(a, b, 81), true],
      ['a->d tcp 80', mtcp(a, d, 80), true],
      ['d->a ping', mping(d, a), true],
      ['a->b udp 53', mudp(a, b), true],
    ]);
  });

  t.test('port ranges and protocols; a peer on another VM by its /32', async (t) => {
    await apply([b, policyOf(b, { isolated: true, rules: [rule([peer(a.ip)], [tcp(8000, 8100)]), rule([peer(`${d.ip}/32`)], null)] })]);
    t.ok(await tcpOk(a, b, 8050), 'a -> b:8050 (inside 8000-8100) allowed');
    t.ok(await tcpBlocked(a, b, 8200), 'a -> b:8200 dropped');
    t.ok(await tcpBlocked(a, b, 80), 'a -> b:80 dropped');
    const sink = await startUdpSink(b.netns, 8060, { echo: true });
    servers.push(sink);
    t.ok(await pl.blocked(() => udpOk(a, b, 8060, FAIL_MS), b, 'ingress'), 'UDP to 8060 dropped: the range is TCP only');
    t.ok(await tcpBlocked(c, b, 8050), 'c -> b:8050 dropped: c is not a peer');
    t.ok(await tcpOk(d, b, 80), 'd (vm2) -> b:80 allowed: ports null = any');
    t.ok(await ping(d.netns, b.ip, { timeoutSec: 5 }), 'd -> b ping allowed (ICMP is included in "any")');
    await clear(b);
  });

  t.test('ipBlock except on egress', async (t) => {
    await apply([a, policyOf(a, OPEN, { isolated: true, rules: [rule([peer('10.240.0.0/16', [`${c.ip}/32`])], null)] })]);
    t.ok(await tcpOk(a, b), 'a -> b allowed (inside the block)');
    t.ok(await tcpOk(a, d), 'a -> d (vm2) allowed');
    t.ok(await tcpBlocked(a, c, 80, a, 'egress'), 'a -> c dropped: c is the except');
    t.ok(await pingBlocked(a, c, a, 'egress'), 'a -> c ping dropped');
    t.ok(await tcpOk(c, a), 'c -> a allowed: only a\'s egress is isolated, and the reply is stateful');
    if (mode === 'iptables') {
      const sets = await lab.execVm('vm1', ['ipset', 'list']);
      t.match(sets.stdout, new RegExp(`${c.ip.replaceAll('.', '\\.')} nomatch`), 'the except is a nomatch entry');
    }
    await clear(a);
  });

  t.test('stateful: replies of allowed connections pass a deny-all direction', async (t) => {
    const echo = await startUdpSink(a.netns, 5353, { echo: true });
    servers.push(echo);
    await apply([b, policyOf(b, DENY, { isolated: true, rules: [rule([peer(a.ip)], [tcp(80), udp(5353)])] })]);
    t.ok(await tcpOk(b, a), 'b -> a:80 allowed, and its replies come in through b\'s default-deny ingress');
    const reply = await udpSend(b.netns, a.ip, 5353, 'hello', { awaitReply: true, timeoutMs: 10_000 }).catch(() => undefined);
    t.equal(reply?.payload, 'hello', 'UDP reply from a reaches b');
    t.ok(await tcpBlocked(a, b, 80), 'a -> b:80 (a new connection) dropped');
    t.ok(await tcpBlocked(b, d, 80, b, 'egress'), 'b -> d dropped by b\'s egress');
    await clear(b);
  });

  if (mode === 'iptables') {
    t.test('iptables: legacy backend (vm2), the same chains in iptables-legacy', async (t) => {
      await apply([d, policyOf(d, { isolated: true, rules: [rule([peer(a.ip)], [tcp(80)])] })]);
      t.ok(await tcpOk(a, d), 'a -> d allowed');
      t.ok(await tcpBlocked(c, d, 80), 'c -> d dropped');
      const nft = await lab.execVm('vm2', ['sh', '-c', 'iptables-nft-save -t filter | grep -c VNET-POL || true']);
      t.equal(nft.stdout.trim(), '0', 'nothing in the nft backend of vm2');
      await clear(d);
      t.ok(await tcpOk(c, d), 'cleared: c -> d');
    });
  }

  t.test('an update never opens a window: allowed flows lose nothing, denied flows get nothing', async (t) => {
    const sink = await startUdpSink(b.netns, 7000);
    servers.push(sink);
    const COUNT = 400;
    // a is allowed by every version, c by none; the versions differ in another peer, so each
    // update replaces the peer state (iptables: new sets, chain swapped, old sets destroyed) while packets flow.
    const version = (i: number) => policyOf(b, { isolated: true, rules: [rule([peer(a.ip), peer(`10.240.${200 + i}.0/24`)], [udp(7000), tcp(80)])] });
    await apply([b, version(0)]);
    const senders = [sender(a, b.ip, 7000, 'a', COUNT), sender(c, b.ip, 7000, 'c', COUNT)];
    const ready = senders.map((s) => waitForLine(s, /^STARTED/, 10_000, 'sender'));
    const done = senders.map((s) => waitForLine(s, /^DONE/, 60_000, 'sender'));
    try {
      await Promise.all(ready);
      for (let i = 1; i <= 6; i++) await apply([b, version(i)]);
      await Promise.all(done);
    } finally {
      for (const s of senders) await stopChild(s, 500);
      await Promise.allSettled([...ready, ...done]);
    }
    await waitFor(() => countFrom(sink, 'a') === COUNT, 10_000);
    t.equal(countFrom(sink, 'a'), COUNT, `all ${COUNT} datagrams of the allowed flow arrived across 6 updates`);
    t.equal(countFrom(sink, 'c'), 0, 'none of the denied flow did');
    if (mode === 'iptables') {
      const sets = await lab.execVm('vm1', ['sh', '-c', 'ipset list -n | grep -c VNET-P4 || true']);
      t.equal(sets.stdout.trim(), '1', 'the replaced sets were destroyed: only the current one is left');
    }
    await clear(b);
  });

  t.test('attach with a policy: the pod never receives what it forbids, from its first packet', async (t) => {
    const used = new Set(Object.values(pl.cni.vm1!.state().endpoints).map((e) => e.ip));
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
    // a, c (same VM) and d (other VM) send to the address before the pod exists and all through its attach.
    // (iptables: d's datagrams the node routed before the policy existed wait in the bridge's neighbour
    // queue; attach drops them, or the pod's first ARP answer would release them past the chains.)
    const COUNT = 400;
    const senders = [sender(a, ip, 7100, 'a', COUNT), sender(c, ip, 7100, 'c', COUNT), sender(d, ip, 7100, 'd', COUNT)];
    // Every wait registered at once, before any output: a line printed before its waiter would be missed.
    const ready = senders.map((s) => waitForLine(s, /^STARTED/, 10_000, 'sender'));
    const done = senders.map((s) => waitForLine(s, /^DONE/, 60_000, 'sender'));
    try {
      await Promise.all(ready);
      const res = await pl.driver('vm1', 'attach', { plan });
      t.ok(res.ok, `attachEndpoint with a policy: ${res.error ?? `${res.ms?.toFixed(0)} ms`}`);
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
    t.same([countFrom(sink, 'a'), countFrom(sink, 'c'), countFrom(sink, 'd')], [0, 0, 0], `nothing of a's, c's or d's ${COUNT} datagrams each reached the pod`);
    const leaked = sink.received.filter((x) => !x.payload.startsWith('b-'));
    if (leaked.length) {
      // What got through, and what the VM held then (which datagrams tell when: sent before or after the attach).
      t.comment(`${leaked.length} through: ${leaked.slice(0, 5).map((x) => `${x.payload} from ${x.from}`).join(', ')} ... ${leaked.slice(-3).map((x) => x.payload).join(' ')}`);
      if (mode === 'iptables') t.comment((await lab.execVm('vm1', ['sh', '-c', `conntrack -L -d ${ip} 2>&1 | head -5; ip neigh show to ${ip}; iptables-nft-save -c -t filter | grep -E 'azvdrve|VNET-POL-FWD|VNET-FORWARD'`])).stdout);
    }
    t.ok((await pl.dropsOf('vm1', ip, 'azvdrve', 'ingress')) > 0, 'they were dropped by its policy (its ingress drop counter)');
    const det = await pl.driver('vm1', 'detach', { plan });
    t.ok(det.ok, `detach: ${det.error ?? 'ok'}`);
    if (mode === 'iptables') {
      const left = await lab.execVm('vm1', ['sh', '-c', 'iptables-nft-save -t filter | grep -c azvdrve || true']);
      t.equal(left.stdout.trim(), '0', 'detach removed its chains and dispatch');
    } else {
      const state = JSON.parse((await pl.driver('vm1', 'state')).out ?? '{}') as { endpoints: Record<string, unknown> };
      t.notOk(ip in state.endpoints, 'detach removed its policy (no vnet_pol_eps entry)');
    }
  });

  t.test('DEL removes the endpoint\'s policy and leaves the others enforced; the last DEL removes everything', async (t) => {
    const cPolicy = policyOf(c, { isolated: true, rules: [rule([peer(d.ip)], [tcp(80)])] });
    await apply([a, policyOf(a, DENY, { isolated: true, rules: [rule([peer(b.ip)], null)] })], [c, cPolicy]);
    await pl.cni.vm1!.del(a);
    if (mode === 'iptables') {
      const after = await lab.execVm('vm1', ['sh', '-c', `iptables-nft-save -t filter | grep -c -- '-j VNET-POL[IE]-' ; ipset list -n | grep -c VNET-P4 || true`]);
      t.same(after.stdout.trim().split('\n'), ['1', '1'], 'a\'s chains and set are gone: one dispatch rule and one set (c\'s) are left');
      const check = await pl.driver('vm1', 'check', { plan: { ...pl.plan(c), policy: cPolicy } });
      t.ok(check.ok, `c's chain is intact: ${check.error ?? 'CHECK passes'}`);
    } else {
      const state = JSON.parse((await pl.driver('vm1', 'state')).out ?? '{}') as { endpoints: Record<string, unknown> };
      t.same([a.ip in state.endpoints, c.ip in state.endpoints], [false, true], 'a\'s policy entry is gone, c\'s is there');
    }
    t.ok(await tcpBlocked(b, c, 80), 'c is still enforced after a left');
    for (const p of [b, c]) await pl.cni.vm1!.del(p);
    await pl.cni.vm2!.del(d);
    if (mode === 'iptables') {
      for (const [vm, save] of [['vm1', 'iptables-nft-save'], ['vm2', 'iptables-legacy-save']]) {
        const rest = await lab.execVm(vm!, ['sh', '-c', `${save} | grep -c VNET- ; ipset list -n | grep -c VNET- || true`]);
        t.same(rest.stdout.trim().split('\n'), ['0', '0'], `${vm}: no chain and no set of ours left`);
      }
    }
  });

  if (mode === 'iptables') {
    t.test('iptables, mode transparent (routed pods, no bridge): egress by the pod veth and ingress by address hold', async (t) => {
      // vm1 drained above, so it switches to mode transparent cleanly.
      pl.cni.vm1!.setConflist(conflist({ mode: 'transparent' }));
      const e = await pl.add('vm1', 'te');
      const f = await pl.add('vm1', 'tf');
      for (const p of [e, f]) servers.push(await startWhoami(p.netns, 80, { name: p.name }));
      t.notMatch((await lab.execVm('vm1', ['ip', '-o', 'link', 'show', 'eth0'])).stdout, /master/, 'eth0 is not bridged');
      t.ok(await tcpOk(e, f), 'e -> f before any policy');
      await apply([e, policyOf(e, OPEN, DENY)]);
      t.ok(await tcpBlocked(e, f, 80, e, 'egress'), 'e -> f dropped by e\'s egress chain (routed: matched by -i)');
      t.ok(await tcpOk(f, e), 'f -> e allowed: only e\'s egress is isolated, replies are stateful');
      await apply([e, policyOf(e, OPEN)], [f, policyOf(f, DENY)]);
      t.ok(await tcpBlocked(e, f, 80), 'e -> f dropped by f\'s ingress chain');
      t.ok(await tcpOk(node1.netns, f), 'the node still reaches f');
      for (const p of [e, f]) await pl.cni.vm1!.del(p);
      const rest = await lab.execVm('vm1', ['sh', '-c', 'iptables-nft-save | grep -c VNET- ; ipset list -n | grep -c VNET- || true']);
      t.same(rest.stdout.trim().split('\n'), ['0', '0'], 'no chain and no set of ours left');
    });
  }

  t.test('apply latency (informational)', async (t) => {
    const sorted = [...pl.applyMs].sort((x, y) => x - y);
    t.comment(`${mode}: applyPolicies inside the VM: n=${sorted.length}, median ${sorted[Math.floor(sorted.length / 2)]?.toFixed(1)} ms, max ${sorted[sorted.length - 1]?.toFixed(1)} ms`);
    t.pass();
  });
}
