// NetworkPolicy in the programs, under BPF_PROG_TEST_RUN: the verdict of every
// enforcement point (from_pod's local redirect, to_nic, from_nic, to_pod),
// ipBlock excepts, port ranges, SCTP, ICMP, stateful replies, the node's own
// traffic, and what the loader leaves in the maps across updates and deletes.
import t from 'tap';
import { buildPacket, TCP } from './helpers/packet.js';
import { HOST_DST_MAC, POD1, POD2, PRIMARY, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, VNET_HOST, openFixture, type Fixture } from './helpers/fixture.js';
import { unavailableReason } from './helpers/env.js';
import type { CompiledRule, DirectionPolicy, EndpointPolicy } from '../../control/policy/types.js';

const skip = unavailableReason() ?? false;
const OPEN: DirectionPolicy = { isolated: false, rules: [] };
const DENY: DirectionPolicy = { isolated: true, rules: [] };

function rule(peers: Array<string | [string, string[]]> | null, ports: Array<[CompiledRule['ports'] extends (infer P)[] | null ? P extends { protocol: infer X } ? X : never : never, number, number?]> | null): CompiledRule {
  return {
    peers: peers === null ? null : peers.map((p) => (typeof p === 'string' ? { family: 'ipv4', cidr: p, except: [] } : { family: 'ipv4', cidr: p[0], except: p[1] })),
    ports: ports === null ? null : ports.map(([protocol, port, endPort]) => ({ protocol, port, endPort: endPort ?? port })),
    sources: ['test/policy'],
  };
}

function policy(ip: string, ingress: DirectionPolicy, egress: DirectionPolicy): EndpointPolicy {
  return { family: 'ipv4', address: ip, pod: `test/${ip}`, ingress, egress };
}

const syn = (src: string, dst: string, sport: number, dport: number, flags: number = TCP.SYN, dstMac?: string): Buffer =>
  buildPacket({ src, dst, tcp: { sport, dport, flags }, ...(dstMac ? { dstMac } : {}) });

async function verdict(f: Fixture, prog: keyof Fixture['progs'], pkt: Buffer, ingress?: number): Promise<number> {
  return (await f.run(f.progs[prog], pkt, ingress)).retval;
}

t.test('egress: pod to pod on the node (from_pod), by port', { skip }, async (t) => {
  const f = await openFixture(t, 'pol-egress');
  await f.dp.setPolicies([{ ip: POD1.ip, policy: policy(POD1.ip, OPEN, { isolated: true, rules: [rule([`${POD2.ip}/32`], [['TCP', 8080]])] }) }]);
  f.delta();
  t.equal(await verdict(f, 'from_pod', syn(POD1.ip, POD2.ip, 40000, 8080), POD1.ifindex), TC_ACT_REDIRECT, 'allowed port');
  t.same(f.delta(), { 'policy-allow': 1, 'forwarded-local': 1 });
  t.equal(await verdict(f, 'from_pod', syn(POD1.ip, POD2.ip, 40000, 8080, TCP.ACK), POD1.ifindex), TC_ACT_REDIRECT, 'same flow again');
  t.same(f.delta(), { 'policy-established': 1, 'forwarded-local': 1 });
  t.equal(await verdict(f, 'from_pod', syn(POD1.ip, POD2.ip, 40001, 9090), POD1.ifindex), TC_ACT_SHOT, 'other port');
  t.equal(await verdict(f, 'from_pod', buildPacket({ src: POD1.ip, dst: POD2.ip, udp: { sport: 1, dport: 8080 } }), POD1.ifindex), TC_ACT_SHOT, 'UDP on the TCP port');
  t.same(f.delta(), { 'drop-policy-egress': 2 });
  t.same(await f.dp.policyDrops(), [{ ip: POD1.ip, direction: 'egress', packets: 2n }], 'drops per endpoint and direction');
  // The reply from POD2 (no policy) to POD1 (egress-only policy): POD1's ingress is open anyway.
  t.equal(await verdict(f, 'from_pod', syn(POD2.ip, POD1.ip, 8080, 40000, TCP.SYN | TCP.ACK), POD2.ifindex), TC_ACT_REDIRECT);
});

t.test('ingress: ipBlock with except and a port range, from the NIC', { skip }, async (t) => {
  const f = await openFixture(t, 'pol-ingress');
  const ing: DirectionPolicy = { isolated: true, rules: [rule([['10.240.0.0/16', ['10.240.0.128/25', '10.240.0.16/28']]], [['TCP', 80, 90]])] };
  await f.dp.setPolicies([{ ip: POD2.ip, policy: policy(POD2.ip, ing, OPEN) }]);
  f.delta();
  const cases: Array<[string, number, number, string]> = [
    ['10.240.1.7', 80, TC_ACT_REDIRECT, 'first port of the range'],
    ['10.240.1.7', 90, TC_ACT_REDIRECT, 'last port of the range'],
    ['10.240.1.7', 85, TC_ACT_REDIRECT, 'inside'],
    ['10.240.1.7', 79, TC_ACT_SHOT, 'below'],
    ['10.240.1.7', 91, TC_ACT_SHOT, 'above'],
    ['10.240.0.200', 85, TC_ACT_SHOT, 'in the first except'],
    [VNET_HOST, 85, TC_ACT_SHOT, 'in the second except (10.240.0.20 in .16/28)'],
    ['10.240.0.40', 85, TC_ACT_REDIRECT, 'between the excepts'],
    ['10.241.0.1', 85, TC_ACT_SHOT, 'outside the cidr'],
  ];
  let sport = 50000;
  for (const [src, dport, want, why] of cases) {
    t.equal(await verdict(f, 'from_nic', syn(src, POD2.ip, sport++, dport, TCP.SYN, HOST_DST_MAC)), want, `${src}:${dport} ${why}`);
  }
  const d = f.delta();
  t.equal(d['drop-policy-ingress'], 5);
  t.equal(d['policy-allow'], 4);
  t.same(await f.dp.policyDrops(), [{ ip: POD2.ip, direction: 'ingress', packets: 5n }]);
});

t.test('SCTP and ICMP: ports rules match their protocol only, a ports-less rule matches everything', { skip }, async (t) => {
  const f = await openFixture(t, 'pol-proto');
  const sctp = (sport: number, dport: number): Buffer => {
    const payload = Buffer.alloc(16);
    payload.writeUInt16BE(sport, 0);
    payload.writeUInt16BE(dport, 2);
    return buildPacket({ src: '10.240.3.3', dst: POD2.ip, proto: 132, payload, dstMac: HOST_DST_MAC });
  };
  const ping = (src: string): Buffer => buildPacket({ src, dst: POD2.ip, icmp: { type: 8, id: 77 }, dstMac: HOST_DST_MAC });
  await f.dp.setPolicies([{ ip: POD2.ip, policy: policy(POD2.ip, { isolated: true, rules: [rule(['10.240.3.0/24'], [['SCTP', 3868]]), rule(['10.240.4.0/24'], null)] }, OPEN) }]);
  t.equal(await verdict(f, 'from_nic', sctp(1000, 3868)), TC_ACT_REDIRECT, 'SCTP to the allowed port');
  t.equal(await verdict(f, 'from_nic', sctp(1000, 3869)), TC_ACT_SHOT, 'SCTP, other port');
  t.equal(await verdict(f, 'from_nic', ping('10.240.3.3')), TC_ACT_SHOT, 'ICMP is not in a ports rule');
  t.equal(await verdict(f, 'from_nic', ping('10.240.4.4')), TC_ACT_REDIRECT, 'ICMP from a peer with all ports');
  t.equal(await verdict(f, 'from_nic', buildPacket({ src: '10.240.4.4', dst: POD2.ip, proto: 47, dstMac: HOST_DST_MAC })), TC_ACT_REDIRECT, 'GRE too');
});

t.test('stateful: replies of allowed connections pass a default-deny direction', { skip }, async (t) => {
  const f = await openFixture(t, 'pol-state');
  // POD1: ingress default deny, egress only to VNET_HOST:443.
  await f.dp.setPolicies([{ ip: POD1.ip, policy: policy(POD1.ip, DENY, { isolated: true, rules: [rule([`${VNET_HOST}/32`], [['TCP', 443]])] }) }]);
  // to_nic sees POD1's packets (redirected by from_pod or routed): the egress check.
  t.equal(await verdict(f, 'to_nic', syn(POD1.ip, VNET_HOST, 40000, 443)), TC_ACT_OK, 'SYN out');
  t.equal(await verdict(f, 'from_nic', syn(VNET_HOST, POD1.ip, 443, 40000, TCP.SYN | TCP.ACK, HOST_DST_MAC)), TC_ACT_REDIRECT, 'SYN-ACK in: a reply');
  t.equal(await verdict(f, 'from_nic', syn(VNET_HOST, POD1.ip, 443, 40001, TCP.SYN | TCP.ACK, HOST_DST_MAC)), TC_ACT_SHOT, 'another port pair: not a reply');
  t.equal(await verdict(f, 'from_nic', syn(VNET_HOST, POD1.ip, 444, 40000, TCP.ACK, HOST_DST_MAC)), TC_ACT_SHOT, 'another remote port: not a reply');
  t.equal(await verdict(f, 'to_nic', syn(POD1.ip, VNET_HOST, 40000, 444)), TC_ACT_SHOT, 'egress to another port');
  t.same(f.delta(), { 'policy-allow': 1, 'policy-established': 1, 'forwarded-from-nic': 1, 'drop-policy-ingress': 2, 'drop-policy-egress': 1 });
  // Inbound admitted by ingress: POD2 accepts TCP 8080 from the VNet and may not send anything on its own.
  await f.dp.setPolicies([{ ip: POD2.ip, policy: policy(POD2.ip, { isolated: true, rules: [rule(['10.240.0.0/16'], [['TCP', 8080]])] }, DENY) }]);
  t.equal(await verdict(f, 'from_nic', syn(VNET_HOST, POD2.ip, 33000, 8080, TCP.SYN, HOST_DST_MAC)), TC_ACT_REDIRECT, 'inbound SYN');
  t.equal(await verdict(f, 'to_nic', syn(POD2.ip, VNET_HOST, 8080, 33000, TCP.SYN | TCP.ACK)), TC_ACT_OK, 'its reply leaves despite egress deny');
  t.equal(await verdict(f, 'to_nic', syn(POD2.ip, VNET_HOST, 8080, 33001, TCP.SYN)), TC_ACT_SHOT, 'a new connection does not');
  t.equal((await f.dp.policyFlows()).length, 2, 'one flow record per admitting endpoint');
});

t.test('pod to pod, both with policy: both checks in from_pod', { skip }, async (t) => {
  const f = await openFixture(t, 'pol-both');
  await f.dp.setPolicies([
    { ip: POD1.ip, policy: policy(POD1.ip, DENY, { isolated: true, rules: [rule(null, [['TCP', 80]])] }) },
    { ip: POD2.ip, policy: policy(POD2.ip, { isolated: true, rules: [rule([`${POD1.ip}/32`], [['TCP', 80], ['TCP', 81]])] }, DENY) },
  ]);
  f.delta();
  t.equal(await verdict(f, 'from_pod', syn(POD1.ip, POD2.ip, 40000, 80), POD1.ifindex), TC_ACT_REDIRECT, 'both allow');
  t.equal(await verdict(f, 'from_pod', syn(POD2.ip, POD1.ip, 80, 40000, TCP.SYN | TCP.ACK), POD2.ifindex), TC_ACT_REDIRECT, 'reply: both established');
  t.same(f.delta(), { 'policy-allow': 2, 'policy-established': 2, 'forwarded-local': 2 });
  t.equal(await verdict(f, 'from_pod', syn(POD1.ip, POD2.ip, 40000, 81), POD1.ifindex), TC_ACT_SHOT, "POD1's egress says no to 81");
  t.equal(await verdict(f, 'from_pod', syn(POD2.ip, POD1.ip, 40000, 80), POD2.ifindex), TC_ACT_SHOT, "POD2's egress says no");
  t.same(f.delta(), { 'drop-policy-egress': 2 });
});

t.test('to_pod: the node itself passes a default deny, forwarded traffic does not', { skip }, async (t) => {
  const f = await openFixture(t, 'pol-topod');
  await f.dp.setPolicies([{ ip: POD1.ip, policy: policy(POD1.ip, DENY, OPEN) }]);
  f.delta();
  t.equal(await verdict(f, 'to_pod', syn(PRIMARY, POD1.ip, 50000, 8080)), TC_ACT_OK, 'kubelet probe from the primary IP');
  t.same(f.delta(), { 'policy-allow-host': 1 });
  t.equal(await verdict(f, 'to_pod', syn(VNET_HOST, POD1.ip, 50000, 8080)), TC_ACT_SHOT, 'a VNet host through the stack');
  t.equal(await verdict(f, 'to_pod', syn(POD2.ip, POD1.ip, 50000, 8080)), TC_ACT_SHOT, 'another pod through the stack');
  t.same(f.delta(), { 'drop-policy-ingress': 2 });
  // POD2 egress-isolated: its packets the stack delivers are checked for its egress too.
  await f.dp.setPolicies([{ ip: POD1.ip, policy: null }, { ip: POD2.ip, policy: policy(POD2.ip, OPEN, DENY) }]);
  t.equal(await verdict(f, 'to_pod', syn(POD2.ip, POD1.ip, 50000, 8080)), TC_ACT_SHOT, 'egress of the sending pod');
  t.same(f.delta(), { 'drop-policy-egress': 1 });
  t.equal(await verdict(f, 'to_pod', syn(VNET_HOST, POD1.ip, 50000, 8080)), TC_ACT_OK, 'no policy: untouched');
  t.same(f.delta(), {});
});

t.test('updates flip ids without leaving entries; identical policies share an id; delete cleans up', { skip }, async (t) => {
  const f = await openFixture(t, 'pol-update');
  const allow80: DirectionPolicy = { isolated: true, rules: [rule(['10.240.0.0/16'], [['TCP', 80]])] };
  const allow81: DirectionPolicy = { isolated: true, rules: [rule(['10.240.0.0/16'], [['TCP', 81]])] };
  await f.dp.setPolicies([
    { ip: POD1.ip, policy: policy(POD1.ip, allow80, OPEN) },
    { ip: POD2.ip, policy: policy(POD2.ip, allow80, OPEN) },
  ]);
  let s = await f.dp.policyState();
  t.equal(s.ids.length, 1, 'one id for two endpoints with the same ingress');
  t.equal(s.endpoints.get(POD1.ip)!.ingressId, s.endpoints.get(POD2.ip)!.ingressId);
  t.same([s.cidrEntries, s.portEntries], [1, 1]);
  const in80 = syn(VNET_HOST, POD1.ip, 50000, 80, TCP.SYN, HOST_DST_MAC);
  const in81 = syn(VNET_HOST, POD1.ip, 50001, 81, TCP.SYN, HOST_DST_MAC);
  t.equal(await verdict(f, 'from_nic', in80), TC_ACT_REDIRECT);
  t.equal(await verdict(f, 'from_nic', in81), TC_ACT_SHOT);
  await f.dp.setPolicies([{ ip: POD1.ip, policy: policy(POD1.ip, allow81, OPEN) }]);
  s = await f.dp.policyState();
  t.equal(s.ids.length, 2, "POD2 keeps the old id, POD1 has a new one");
  t.equal(await verdict(f, 'from_nic', syn(VNET_HOST, POD1.ip, 50002, 81, TCP.SYN, HOST_DST_MAC)), TC_ACT_REDIRECT, 'new rule enforced');
  t.equal(await verdict(f, 'from_nic', syn(VNET_HOST, POD1.ip, 50003, 80, TCP.SYN, HOST_DST_MAC)), TC_ACT_SHOT, 'old rule gone for new flows');
  t.equal(await verdict(f, 'from_nic', in80), TC_ACT_REDIRECT, 'an established flow stays allowed');
  await f.dp.setPolicies([{ ip: POD2.ip, policy: policy(POD2.ip, allow81, OPEN) }]);
  s = await f.dp.policyState();
  t.equal(s.ids.length, 1, 'the unused id was removed');
  t.same([s.cidrEntries, s.portEntries], [1, 1], 'with its entries');
  await f.dp.deleteEndpoint(POD1.ip);
  await f.dp.deleteEndpoint(POD2.ip);
  s = await f.dp.policyState();
  t.same([s.endpoints.size, s.ids.length, s.cidrEntries, s.portEntries], [0, 0, 0, 0], 'nothing left after delete');
  t.same(await f.dp.policyFlows(), [], 'flow records of the endpoints purged');
  t.same(await f.dp.policyDrops(), [], 'drop counters removed');
});

t.test('a bad rule changes nothing', { skip }, async (t) => {
  const f = await openFixture(t, 'pol-bad');
  const good = policy(POD1.ip, { isolated: true, rules: [rule(['10.240.0.0/16'], [['TCP', 80]])] }, OPEN);
  await f.dp.setPolicies([{ ip: POD1.ip, policy: good }]);
  const before = await f.dp.policyState();
  await t.rejects(f.dp.setPolicies([{ ip: POD2.ip, policy: policy(POD2.ip, DENY, OPEN) }, { ip: POD1.ip, policy: policy(POD1.ip, { isolated: true, rules: [rule(['10.240.0.0/33'], null)] }, OPEN) }]), { code: 'EINVALIDCONFIG' });
  await t.rejects(f.dp.setPolicies([{ ip: POD1.ip, policy: policy(POD1.ip, { isolated: true, rules: [rule(null, [['TCP', 90, 80]])] }, OPEN) }]), { code: 'EINVALIDCONFIG' });
  t.same(await f.dp.policyState(), before, 'maps untouched (POD2 not written either)');
});

/** An ICMP error from `from` to `to` quoting the first 28 bytes (IP header + 8) of `about`, as a router sends it. */
function icmpError(from: string, to: string, type: number, code: number, about: Buffer, dstMac?: string): Buffer {
  return buildPacket({ src: from, dst: to, icmp: { type, code, id: 0, seq: type === 3 && code === 4 ? 1400 : 0 }, payload: about.subarray(14, 14 + 28), ...(dstMac ? { dstMac } : {}) });
}

t.test('related: ICMP errors and later fragments of admitted flows pass an isolated direction', { skip }, async (t) => {
  const f = await openFixture(t, 'pol-related');
  const ROUTER = '10.240.9.9';
  // POD1: ingress default deny; egress TCP 443 and UDP 53 to VNET_HOST. POD2: ingress UDP 53 from the VNet, egress deny.
  await f.dp.setPolicies([
    { ip: POD1.ip, policy: policy(POD1.ip, DENY, { isolated: true, rules: [rule([`${VNET_HOST}/32`], [['TCP', 443], ['UDP', 53]])] }) },
    { ip: POD2.ip, policy: policy(POD2.ip, { isolated: true, rules: [rule(['10.240.0.0/16'], [['UDP', 53]])] }, DENY) },
  ]);
  const out = syn(POD1.ip, VNET_HOST, 40000, 443);
  t.equal(await verdict(f, 'to_nic', out), TC_ACT_OK, 'POD1 opens TCP 443');
  f.delta();
  const fragNeeded = (about: Buffer, from = ROUTER): Buffer => icmpError(from, POD1.ip, 3, 4, about, HOST_DST_MAC);
  t.equal(await verdict(f, 'from_nic', fragNeeded(out)), TC_ACT_REDIRECT, 'fragmentation needed for that connection, from a router on the path');
  t.same(f.delta(), { 'policy-related-icmp': 1, 'forwarded-from-nic': 1 });
  t.equal(await verdict(f, 'from_nic', icmpError(ROUTER, POD1.ip, 11, 0, out, HOST_DST_MAC)), TC_ACT_REDIRECT, 'time exceeded, same connection');
  t.equal(await verdict(f, 'from_nic', icmpError(ROUTER, POD1.ip, 12, 0, out, HOST_DST_MAC)), TC_ACT_REDIRECT, 'parameter problem, same connection');
  f.delta();
  t.equal(await verdict(f, 'from_nic', fragNeeded(syn(POD1.ip, VNET_HOST, 40001, 443))), TC_ACT_SHOT, 'about another source port: no such connection');
  t.equal(await verdict(f, 'from_nic', fragNeeded(syn(POD1.ip, VNET_HOST, 40000, 444))), TC_ACT_SHOT, 'about another destination port');
  t.equal(await verdict(f, 'from_nic', fragNeeded(syn(POD2.ip, VNET_HOST, 40000, 443))), TC_ACT_SHOT, "quoting another pod's packet");
  t.equal(await verdict(f, 'from_nic', icmpError(ROUTER, POD1.ip, 5, 1, out, HOST_DST_MAC)), TC_ACT_SHOT, 'a redirect is not an error that relates');
  t.equal(await verdict(f, 'from_nic', icmpError(ROUTER, POD1.ip, 3, 4, out.subarray(0, 14 + 24), HOST_DST_MAC)), TC_ACT_SHOT, 'a quote too short for the ports');
  t.same(f.delta(), { 'drop-policy-ingress': 5 });

  // Egress: POD2 answers a datagram its ingress admitted with port unreachable; its egress is default deny.
  const query = buildPacket({ src: VNET_HOST, dst: POD2.ip, udp: { sport: 5353, dport: 53 }, dstMac: HOST_DST_MAC });
  t.equal(await verdict(f, 'from_nic', query), TC_ACT_REDIRECT, 'UDP 53 into POD2');
  f.delta();
  t.equal(await verdict(f, 'to_nic', icmpError(POD2.ip, VNET_HOST, 3, 3, query)), TC_ACT_OK, 'its port unreachable leaves');
  t.same(f.delta(), { 'policy-related-icmp': 1 });
  const other = buildPacket({ src: VNET_HOST, dst: POD2.ip, udp: { sport: 5354, dport: 53 } });
  t.equal(await verdict(f, 'to_nic', icmpError(POD2.ip, VNET_HOST, 3, 3, other)), TC_ACT_SHOT, 'about a datagram never admitted: dropped');

  // Fragments: POD1's large UDP query and the large answer.
  const frag = (src: string, dst: string, id: number, first: boolean, more: boolean): Buffer =>
    first
      ? buildPacket({ src, dst, ipId: id, moreFragments: more, udp: { sport: src === POD1.ip ? 5555 : 53, dport: src === POD1.ip ? 53 : 5555 }, payload: Buffer.alloc(1000) })
      : buildPacket({ src, dst, ipId: id, moreFragments: more, fragOffset: 126, proto: 17, payload: Buffer.alloc(600) });
  f.delta();
  t.equal(await verdict(f, 'to_nic', frag(POD1.ip, VNET_HOST, 0x4242, false, false)), TC_ACT_SHOT, 'a later fragment before its first: no record');
  t.equal(await verdict(f, 'to_nic', frag(POD1.ip, VNET_HOST, 0x4242, true, true)), TC_ACT_OK, 'first fragment, UDP 53: allowed');
  t.equal(await verdict(f, 'to_nic', frag(POD1.ip, VNET_HOST, 0x4242, false, false)), TC_ACT_OK, 'its later fragment follows it');
  t.equal(await verdict(f, 'to_nic', frag(POD1.ip, VNET_HOST, 0x4243, false, false)), TC_ACT_SHOT, 'a later fragment of another datagram');
  t.equal(await verdict(f, 'to_nic', frag(POD1.ip, '10.240.7.7', 0x4242, false, false)), TC_ACT_SHOT, 'the same IP id to another peer');
  t.same(f.delta(), { 'drop-policy-egress': 3, 'policy-allow': 1, 'policy-related-fragment': 1 });
  // The fragmented answer, delivered by the stack (to_pod) into POD1's default-deny ingress.
  t.equal(await verdict(f, 'to_pod', frag(VNET_HOST, POD1.ip, 0x0707, true, true)), TC_ACT_OK, 'first fragment of the answer: a reply');
  t.equal(await verdict(f, 'to_pod', frag(VNET_HOST, POD1.ip, 0x0707, false, true)), TC_ACT_OK, 'a middle fragment');
  t.equal(await verdict(f, 'to_pod', frag(VNET_HOST, POD1.ip, 0x0707, false, false)), TC_ACT_OK, 'the last fragment');
  t.same(f.delta(), { 'policy-established': 1, 'policy-related-fragment': 2 });
  const frags = (await f.dp.policyFlows()).filter((fl) => fl.kind === 'fragment').map((fl) => `${fl.local.ip}<>${fl.remote.ip}#${fl.local.port}`).sort();
  t.same(frags, [`${POD1.ip}<>${VNET_HOST}#${0x0707}`, `${POD1.ip}<>${VNET_HOST}#${0x4242}`].sort(), 'one fragment record per admitted datagram, keyed by its IP id');
});
