// SNAT on eth0 egress (to_nic) and its reverse on eth0 ingress (from_nic),
// driven by BPF_PROG_TEST_RUN with built packets. Checksums are verified here
// in TS, independently of the kernel helpers that rewrote them.
import t from 'tap';
import { buildPacket, parsePacket, TCP } from './helpers/packet.js';
import {
  HOST_DST_MAC,
  INTERNET,
  PEERED,
  POD1,
  PRIMARY,
  TC_ACT_OK,
  TC_ACT_REDIRECT,
  TC_ACT_SHOT,
  VNET_HOST,
  WIRESERVER,
  openFixture,
} from './helpers/fixture.js';
import { encodeNatEntry, encodeNatTuple, decodeNatEntry } from '../../control/dataplane/ebpf/layouts.js';
import { BPF_NOEXIST } from '../../native/index.js';
import { sleep, unavailableReason } from './helpers/env.js';

const skip = unavailableReason() ?? false;
const inRange = (p: number | undefined): boolean => p !== undefined && p >= 61000 && p <= 65535;

t.test('TCP SYN from a pod to the internet is SNATed to the primary IP, then hits the same mapping', { skip }, async (t) => {
  const f = await openFixture(t, 'snat-tcp');
  const syn = buildPacket({ src: POD1.ip, dst: INTERNET, tcp: { sport: 40000, dport: 443, flags: TCP.SYN } });
  const r = await f.run(f.progs.to_nic, syn);
  t.equal(r.retval, TC_ACT_OK);
  const out = parsePacket(r.data);
  t.equal(out.src, PRIMARY, 'source is the primary IP');
  t.equal(out.dst, INTERNET);
  t.equal(out.dport, 443);
  t.ok(inRange(out.sport), `nat port ${out.sport} in the configured range`);
  t.ok(out.ipCsumOk, 'IP checksum valid');
  t.equal(out.l4CsumOk, true, 'TCP checksum valid');
  t.same(f.delta(), { 'snat-new': 1 });

  const ack = buildPacket({ src: POD1.ip, dst: INTERNET, tcp: { sport: 40000, dport: 443, flags: TCP.ACK, seq: 1001 } });
  const r2 = parsePacket((await f.run(f.progs.to_nic, ack)).data);
  t.equal(r2.sport, out.sport, 'same flow, same port');
  t.equal(r2.l4CsumOk, true);
  t.same(f.delta(), { 'snat-hit': 1 });

  const nat = await f.dp.natEntries();
  t.equal(nat.length, 1);
  t.match(nat[0], { proto: 'tcp', pod: { ip: POD1.ip, port: 40000 }, remote: { ip: INTERNET, port: 443 }, nat: { ip: PRIMARY, port: out.sport }, orphan: false });
});

t.test('replies are translated back to the pod (stack path by default, redirect with fastPathExternal)', { skip }, async (t) => {
  for (const fastPathExternal of [false, true]) {
    const f = await openFixture(t, `rev-${fastPathExternal}`, { fastPathExternal });
    const syn = buildPacket({ src: POD1.ip, dst: INTERNET, tcp: { sport: 40000, dport: 443 } });
    const natPort = parsePacket((await f.run(f.progs.to_nic, syn)).data).sport!;
    f.delta();
    const synAck = buildPacket({ dstMac: HOST_DST_MAC, src: INTERNET, dst: PRIMARY, ttl: 50, tcp: { sport: 443, dport: natPort, flags: TCP.SYN | TCP.ACK } });
    const r = await f.run(f.progs.from_nic, synAck);
    const back = parsePacket(r.data);
    t.equal(back.dst, POD1.ip, 'destination restored');
    t.equal(back.dport, 40000, 'port restored');
    t.equal(back.src, INTERNET);
    t.equal(back.sport, 443);
    t.ok(back.ipCsumOk);
    t.equal(back.l4CsumOk, true);
    if (fastPathExternal) {
      t.equal(r.retval, TC_ACT_REDIRECT, 'redirected to the pod');
      t.equal(back.dstMac, POD1.podMac);
      t.equal(back.srcMac, POD1.hostMac);
      t.equal(back.ttl, 49, 'TTL decremented');
      t.same(f.delta(), { 'rev-snat': 1, 'forwarded-from-nic': 1 });
    } else {
      t.equal(r.retval, TC_ACT_OK, 'handed to the stack, which routes it to the pod');
      t.equal(back.ttl, 50, 'the stack decrements TTL itself');
      t.same(f.delta(), { 'rev-snat': 1 });
    }
  }
});

t.test('UDP is SNATed with a valid checksum; a zero UDP checksum stays zero', { skip }, async (t) => {
  const f = await openFixture(t, 'snat-udp');
  const out = parsePacket((await f.run(f.progs.to_nic, buildPacket({ src: POD1.ip, dst: INTERNET, udp: { sport: 5353, dport: 53 } }))).data);
  t.equal(out.src, PRIMARY);
  t.ok(inRange(out.sport));
  t.ok(out.ipCsumOk);
  t.equal(out.l4CsumOk, true);
  t.not(out.udpChecksum, 0);

  const z = parsePacket((await f.run(f.progs.to_nic, buildPacket({ src: POD1.ip, dst: INTERNET, udp: { sport: 5354, dport: 53, zeroChecksum: true } }))).data);
  t.equal(z.src, PRIMARY);
  t.equal(z.udpChecksum, 0, 'no checksum stays no checksum');
  t.ok(z.ipCsumOk);

  const reply = buildPacket({ dstMac: HOST_DST_MAC, src: INTERNET, dst: PRIMARY, udp: { sport: 53, dport: out.sport! } });
  const back = parsePacket((await f.run(f.progs.from_nic, reply)).data);
  t.equal(back.dst, POD1.ip);
  t.equal(back.dport, 5353);
  t.equal(back.l4CsumOk, true);
  t.same(f.delta(), { 'snat-new': 2, 'rev-snat': 1 });
});

t.test('ICMP echo: the id is the port, both ways', { skip }, async (t) => {
  const f = await openFixture(t, 'snat-icmp');
  const req = buildPacket({ src: POD1.ip, dst: INTERNET, icmp: { type: 8, id: 0x4242, seq: 7 } });
  const out = parsePacket((await f.run(f.progs.to_nic, req)).data);
  t.equal(out.src, PRIMARY);
  t.equal(out.icmpType, 8);
  t.ok(inRange(out.icmpId), `echo id ${out.icmpId} translated`);
  t.ok(out.ipCsumOk);
  t.equal(out.l4CsumOk, true, 'ICMP checksum valid');
  const reply = buildPacket({ dstMac: HOST_DST_MAC, src: INTERNET, dst: PRIMARY, icmp: { type: 0, id: out.icmpId!, seq: 7 } });
  const back = parsePacket((await f.run(f.progs.from_nic, reply)).data);
  t.equal(back.dst, POD1.ip);
  t.equal(back.icmpId, 0x4242, 'original id restored');
  t.equal(back.l4CsumOk, true);
  // A pod's echo *reply* (to an inbound ping via its public IP) is never translated.
  const podReply = buildPacket({ src: POD1.ip, dst: INTERNET, icmp: { type: 0, id: 9, seq: 1 } });
  const r = await f.run(f.progs.to_nic, podReply);
  t.same(r.data, podReply, 'echo reply leaves untouched');
  t.same(f.delta(), { 'snat-new': 1, 'rev-snat': 1, 'pass-untracked': 1 });
});

t.test('no SNAT towards the VNet, peered ranges and the wireserver', { skip }, async (t) => {
  const f = await openFixture(t, 'nosnat');
  for (const dst of [VNET_HOST, PEERED, WIRESERVER]) {
    const pkt = buildPacket({ src: POD1.ip, dst, tcp: { sport: 40000, dport: 80 } });
    const r = await f.run(f.progs.to_nic, pkt);
    t.equal(r.retval, TC_ACT_OK, dst);
    t.same(r.data, pkt, `${dst}: packet unchanged`);
  }
  // The node's own traffic is never touched either.
  const host = buildPacket({ src: PRIMARY, dst: INTERNET, tcp: { sport: 40000, dport: 80 } });
  t.same((await f.run(f.progs.to_nic, host)).data, host, 'host traffic unchanged');
  t.same(f.delta(), {});
  t.equal((await f.dp.natEntries()).length, 0);
});

t.test('replies of inbound connections are not translated, and a bare ACK creates no mapping', { skip }, async (t) => {
  const f = await openFixture(t, 'inbound');
  // The fabric DNATs a pod's public IP: the SYN arrives for the pod itself.
  const inSyn = buildPacket({ dstMac: HOST_DST_MAC, src: INTERNET, dst: POD1.ip, tcp: { sport: 5555, dport: 80, flags: TCP.SYN } });
  const r = await f.run(f.progs.from_nic, inSyn);
  t.equal(r.retval, TC_ACT_REDIRECT, 'delivered to the pod');
  t.equal(parsePacket(r.data).dstMac, POD1.podMac);
  t.same(f.delta(), { 'forwarded-from-nic': 1 });
  const flows = await f.dp.inboundFlows();
  t.match(flows, [{ proto: 'tcp', pod: { ip: POD1.ip, port: 80 }, remote: { ip: INTERNET, port: 5555 } }]);

  const synAck = buildPacket({ src: POD1.ip, dst: INTERNET, tcp: { sport: 80, dport: 5555, flags: TCP.SYN | TCP.ACK } });
  const out = await f.run(f.progs.to_nic, synAck);
  t.equal(out.retval, TC_ACT_OK);
  t.same(out.data, synAck, 'reply leaves with the pod IP (the fabric maps it back to the public IP)');
  t.same(f.delta(), { 'pass-inbound-reply': 1 });

  const strayAck = buildPacket({ src: POD1.ip, dst: INTERNET, tcp: { sport: 41000, dport: 443, flags: TCP.ACK } });
  t.same((await f.run(f.progs.to_nic, strayAck)).data, strayAck, 'no SYN, no entry: untouched');
  t.same(f.delta(), { 'pass-untracked': 1 });
  t.equal((await f.dp.natEntries()).length, 0, 'no mapping was created');
});

t.test('port collisions: taken ports are skipped, exhaustion drops, ports are per remote endpoint', { skip }, async (t) => {
  const f = await openFixture(t, 'collide', { natPortRange: { min: 61000, max: 61001 } });
  const rev = f.map('snatRev');
  // Another flow already owns 61000 towards INTERNET:443.
  const taken = { saddr: PRIMARY, daddr: INTERNET, sport: 61000, dport: 443, proto: 6 };
  rev.update(encodeNatTuple(taken), encodeNatEntry({ addr: '10.240.0.99', port: 1234, lastSeenNs: process.hrtime.bigint() + 10n ** 12n }), BPF_NOEXIST);
  const syn = (sport: number, dport = 443) => buildPacket({ src: POD1.ip, dst: INTERNET, tcp: { sport, dport } });

  const a = parsePacket((await f.run(f.progs.to_nic, syn(40000))).data);
  t.equal(a.sport, 61001, 'the free port is chosen');
  const b = await f.run(f.progs.to_nic, syn(40001));
  t.equal(b.retval, TC_ACT_SHOT, 'no port left: dropped');
  t.same(b.data.subarray(0, 34 + 4), syn(40001).subarray(0, 34 + 4), 'dropped packet was not rewritten');
  t.same(f.delta(), { 'snat-new': 1, 'drop-nat-port-exhausted': 1 });

  const c = parsePacket((await f.run(f.progs.to_nic, syn(40001, 80))).data);
  t.ok(c.sport === 61000 || c.sport === 61001, 'another remote port reuses the range');
  t.equal(c.src, PRIMARY);
  const entries = await f.dp.natEntries();
  t.equal(entries.length, 2);
});

t.test('expiry: stale pairs are replaced in the datapath and swept by expireNat', { skip }, async (t) => {
  const f = await openFixture(t, 'expiry', { timeouts: { tcpMs: 1000, udpMs: 1000, icmpMs: 1000 } });
  const syn = buildPacket({ src: POD1.ip, dst: INTERNET, tcp: { sport: 40000, dport: 443 } });
  const port1 = parsePacket((await f.run(f.progs.to_nic, syn)).data).sport!;
  f.delta();
  // Age both directions of the pair far into the past.
  const fwd = f.map('snatFwd');
  const rev = f.map('snatRev');
  const fkey = encodeNatTuple({ saddr: POD1.ip, daddr: INTERNET, sport: 40000, dport: 443, proto: 6 });
  const rkey = encodeNatTuple({ saddr: PRIMARY, daddr: INTERNET, sport: port1, dport: 443, proto: 6 });
  const old = process.hrtime.bigint() - 10_000_000_000n;
  fwd.update(fkey, encodeNatEntry({ ...decodeNatEntry(fwd.lookup(fkey)!), lastSeenNs: old }));
  rev.update(rkey, encodeNatEntry({ ...decodeNatEntry(rev.lookup(rkey)!), lastSeenNs: old }));
  // A late reply for the dead mapping is not translated...
  const lateReply = buildPacket({ dstMac: HOST_DST_MAC, src: INTERNET, dst: PRIMARY, tcp: { sport: 443, dport: port1, flags: TCP.ACK } });
  t.same((await f.run(f.progs.from_nic, lateReply)).data, lateReply, 'reply to an expired mapping left alone');
  t.equal(rev.lookup(rkey), null, 'and the dead pair was removed');
  // ...and a new SYN gets a fresh mapping.
  await f.run(f.progs.to_nic, syn);
  t.same(f.delta(), { 'snat-new': 1 });

  // Real idle time against a 1 s timeout: sweep removes the UDP pair, keeps nothing stale.
  await f.run(f.progs.to_nic, buildPacket({ src: POD1.ip, dst: INTERNET, udp: { sport: 5000, dport: 53 } }));
  t.equal((await f.dp.natEntries()).length, 2);
  t.same(await f.dp.expireNat(), { nat: 0, inbound: 0 }, 'fresh entries survive a sweep');
  await sleep(1500);
  t.same(await f.dp.expireNat(), { nat: 2, inbound: 0 }, 'idle entries are swept');
  t.equal((await f.dp.natEntries()).length, 0);
  t.equal((await rev.entries()).length, 0, 'reverse map empty too');
});

t.test('a reply to the primary IP without a mapping is host traffic: untouched', { skip }, async (t) => {
  const f = await openFixture(t, 'hostreply');
  const pkt = buildPacket({ dstMac: HOST_DST_MAC, src: INTERNET, dst: PRIMARY, tcp: { sport: 443, dport: 62000, flags: TCP.ACK } });
  const r = await f.run(f.progs.from_nic, pkt);
  t.equal(r.retval, TC_ACT_OK);
  t.same(r.data, pkt);
  t.same(f.delta(), {});
});

t.test('deleting an endpoint purges its NAT state', { skip }, async (t) => {
  const f = await openFixture(t, 'purge');
  await f.run(f.progs.to_nic, buildPacket({ src: POD1.ip, dst: INTERNET, udp: { sport: 5000, dport: 53 } }));
  t.equal((await f.dp.natEntries()).length, 1);
  t.equal(await f.dp.deleteEndpoint(POD1.ip), true);
  t.equal((await f.dp.natEntries()).length, 0);
  t.equal((await f.map('snatRev').entries()).length, 0);
  t.equal(await f.dp.deleteEndpoint(POD1.ip), false, 'second delete: already gone');
});
