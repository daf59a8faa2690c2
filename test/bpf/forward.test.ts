// from_pod decisions under BPF_PROG_TEST_RUN: local forwarding, anti-spoofing,
// what goes to the stack. (Real redirects are in traffic.test.ts.)
import t from 'tap';
import { buildArp, buildPacket, parsePacket, TCP } from './helpers/packet.js';
import { INTERNET, POD1, POD2, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, openFixture } from './helpers/fixture.js';
import { unavailableReason } from './helpers/env.js';

const skip = unavailableReason() ?? false;

t.test('pod to a pod on the same node: MACs set, TTL decremented, redirect_peer', { skip }, async (t) => {
  const f = await openFixture(t, 'fwd-local');
  for (const pkt of [
    buildPacket({ srcMac: POD1.podMac, dstMac: POD1.hostMac, src: POD1.ip, dst: POD2.ip, ttl: 64, tcp: { sport: 40000, dport: 8080, flags: TCP.SYN } }),
    buildPacket({ srcMac: POD1.podMac, dstMac: POD1.hostMac, src: POD1.ip, dst: POD2.ip, ttl: 64, icmp: { type: 8, id: 1 } }),
  ]) {
    const r = await f.run(f.progs.from_pod, pkt, POD1.ifindex);
    t.equal(r.retval, TC_ACT_REDIRECT);
    const out = parsePacket(r.data);
    t.equal(out.dstMac, POD2.podMac, 'dst MAC = target pod');
    t.equal(out.srcMac, POD2.hostMac, "src MAC = target's host veth");
    t.equal(out.ttl, 63);
    t.ok(out.ipCsumOk, 'IP checksum fixed after TTL change');
    t.equal(out.l4CsumOk, true);
    t.equal(out.src, POD1.ip, 'addresses untouched');
    t.equal(out.dst, POD2.ip);
  }
  t.same(f.delta(), { 'forwarded-local': 2 });
});

t.test('spoofed sources are dropped', { skip }, async (t) => {
  const f = await openFixture(t, 'fwd-spoof');
  const cases = [
    { src: '10.240.0.99', why: 'not an endpoint' },
    { src: POD2.ip, why: "another pod's IP on this veth" },
  ];
  for (const c of cases) {
    const r = await f.run(f.progs.from_pod, buildPacket({ src: c.src, dst: POD2.ip, udp: { sport: 1, dport: 2 } }), POD1.ifindex);
    t.equal(r.retval, TC_ACT_SHOT, c.why);
  }
  t.same(f.delta(), { 'drop-spoofed-source': 2 });
});

t.test('what the stack keeps: ARP, TTL 1, broadcast, the outside world (default)', { skip }, async (t) => {
  const f = await openFixture(t, 'fwd-stack');
  const arp = buildArp(POD1.podMac, POD1.ip, '10.240.0.1');
  const r = await f.run(f.progs.from_pod, arp, POD1.ifindex);
  t.equal(r.retval, TC_ACT_OK, 'ARP passes (proxy_arp answers it)');
  t.same(r.data, arp);
  t.same(f.delta(), {}, 'ARP is not counted');
  const cases = [
    buildPacket({ src: POD1.ip, dst: POD2.ip, ttl: 1, udp: { sport: 1, dport: 2 } }),
    buildPacket({ src: POD1.ip, dst: '255.255.255.255', udp: { sport: 68, dport: 67 } }),
    buildPacket({ src: POD1.ip, dst: '224.0.0.251', udp: { sport: 5353, dport: 5353 } }),
    buildPacket({ src: POD1.ip, dst: INTERNET, tcp: { sport: 40000, dport: 443 } }),
  ];
  for (const pkt of cases) {
    const out = await f.run(f.progs.from_pod, pkt, POD1.ifindex);
    t.equal(out.retval, TC_ACT_OK);
    t.same(out.data, pkt, 'unchanged');
  }
  t.same(f.delta(), { 'pass-to-stack': cases.length });
});

t.test('a removed endpoint is no longer a forwarding target', { skip }, async (t) => {
  const f = await openFixture(t, 'fwd-del');
  await f.dp.deleteEndpoint(POD2.ip);
  const pkt = buildPacket({ src: POD1.ip, dst: POD2.ip, udp: { sport: 1, dport: 2 } });
  const r = await f.run(f.progs.from_pod, pkt, POD1.ifindex);
  t.not(r.retval, TC_ACT_REDIRECT);
  t.same(r.data, pkt);
});
