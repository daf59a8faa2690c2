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

// ---- TCP close tracking -------------------------------------------------------
// One NAT port, so "the port is free again" is observable: a second flow to the
// same remote ip:port either gets 61000 or is dropped as exhausted.

const ONE_PORT = { natPortRange: { min: 61000, max: 61000 } };
const podTcp = (sport: number, flags: number) => buildPacket({ src: POD1.ip, dst: INTERNET, tcp: { sport, dport: 443, flags } });
const remoteTcp = (natPort: number, flags: number) =>
  buildPacket({ dstMac: HOST_DST_MAC, src: INTERNET, dst: PRIMARY, tcp: { sport: 443, dport: natPort, flags } });

t.test('RST: the mapping keeps translating, then frees its port after the RST timeout (not the TCP one)', { skip }, async (t) => {
  const f = await openFixture(t, 'close-rst', { ...ONE_PORT, timeouts: { tcpRstMs: 10_000 } });
  const first = parsePacket((await f.run(f.progs.to_nic, podTcp(40000, TCP.SYN))).data);
  t.equal(first.sport, 61000);
  t.equal(parsePacket((await f.run(f.progs.from_nic, remoteTcp(61000, TCP.SYN | TCP.ACK))).data).dport, 40000);
  t.equal((await f.run(f.progs.to_nic, podTcp(40001, TCP.SYN))).retval, TC_ACT_SHOT, 'a live mapping holds the only port');
  t.same(f.delta(), { 'snat-new': 1, 'rev-snat': 1, 'drop-nat-port-exhausted': 1 });

  // The remote resets; packets in flight are still translated both ways.
  const rst = parsePacket((await f.run(f.progs.from_nic, remoteTcp(61000, TCP.RST | TCP.ACK))).data);
  t.equal(rst.dst, POD1.ip, 'the RST itself reaches the pod');
  t.equal(rst.dport, 40000);
  t.equal(rst.l4CsumOk, true);
  const late = parsePacket((await f.run(f.progs.to_nic, podTcp(40000, TCP.ACK))).data);
  t.equal(late.src, PRIMARY, 'a packet after the RST is still translated');
  t.equal(late.sport, 61000);
  t.same(f.delta(), { 'rev-snat': 1, 'snat-hit': 1 });
  t.match(await f.dp.natEntries(), [{ pod: { port: 40000 }, nat: { port: 61000 }, closed: true, closeFlags: 4 }], 'both entries marked RST');
  t.equal((await f.run(f.progs.to_nic, podTcp(40001, TCP.SYN))).retval, TC_ACT_SHOT, 'within the RST timeout the port stays taken');
  f.delta();

  // Idle for 11 s (aged in the maps): past the 10 s RST timeout, far below the 3600 s TCP one.
  const fkey = encodeNatTuple({ saddr: POD1.ip, daddr: INTERNET, sport: 40000, dport: 443, proto: 6 });
  const rkey = encodeNatTuple({ saddr: PRIMARY, daddr: INTERNET, sport: 61000, dport: 443, proto: 6 });
  const fwd = f.map('snatFwd');
  const rev = f.map('snatRev');
  const aged = process.hrtime.bigint() - 11_000_000_000n;
  fwd.update(fkey, encodeNatEntry({ ...decodeNatEntry(fwd.lookup(fkey)!), lastSeenNs: aged }));
  rev.update(rkey, encodeNatEntry({ ...decodeNatEntry(rev.lookup(rkey)!), lastSeenNs: aged }));
  const next = await f.run(f.progs.to_nic, podTcp(40001, TCP.SYN));
  t.equal(next.retval, TC_ACT_OK);
  t.equal(parsePacket(next.data).sport, 61000, 'a new flow to the same remote ip:port reuses the port');
  t.same(f.delta(), { 'snat-new': 1 });
  t.equal(fwd.lookup(fkey), null, 'the closed pair was reclaimed');
  t.match(await f.dp.natEntries(), [{ pod: { port: 40001 }, nat: { port: 61000 }, closed: false, closeFlags: 0 }]);
  const reply = parsePacket((await f.run(f.progs.from_nic, remoteTcp(61000, TCP.SYN | TCP.ACK))).data);
  t.equal(reply.dport, 40001, 'replies now go to the new flow');
});

t.test('an established pair idle as long is kept: the short timeout needs a close', { skip }, async (t) => {
  const f = await openFixture(t, 'close-ctl', { ...ONE_PORT, timeouts: { tcpRstMs: 10_000 } });
  await f.run(f.progs.to_nic, podTcp(40000, TCP.SYN));
  const fkey = encodeNatTuple({ saddr: POD1.ip, daddr: INTERNET, sport: 40000, dport: 443, proto: 6 });
  const rkey = encodeNatTuple({ saddr: PRIMARY, daddr: INTERNET, sport: 61000, dport: 443, proto: 6 });
  const fwd = f.map('snatFwd');
  const rev = f.map('snatRev');
  const aged = process.hrtime.bigint() - 11_000_000_000n;
  fwd.update(fkey, encodeNatEntry({ ...decodeNatEntry(fwd.lookup(fkey)!), lastSeenNs: aged }));
  rev.update(rkey, encodeNatEntry({ ...decodeNatEntry(rev.lookup(rkey)!), lastSeenNs: aged }));
  f.delta();
  t.equal((await f.run(f.progs.to_nic, podTcp(40001, TCP.SYN))).retval, TC_ACT_SHOT, 'port still taken');
  t.same(f.delta(), { 'drop-nat-port-exhausted': 1 });
  t.same(await f.dp.expireNat(), { nat: 0, inbound: 0 }, 'the sweep keeps it too');
});

t.test('a new SYN on a closed tuple restarts its mapping at once, keeping the port', { skip }, async (t) => {
  const f = await openFixture(t, 'close-resyn', { natPortRange: { min: 61000, max: 61007 } });
  const port1 = parsePacket((await f.run(f.progs.to_nic, podTcp(40000, TCP.SYN))).data).sport!;
  await f.run(f.progs.to_nic, podTcp(40000, TCP.SYN));
  t.same(f.delta(), { 'snat-new': 1, 'snat-hit': 1 }, 'a retransmitted SYN on an open mapping is a hit');
  await f.run(f.progs.to_nic, podTcp(40000, TCP.RST));
  t.match(await f.dp.natEntries(), [{ closed: true, closeFlags: 4 }]);
  f.delta();
  // The pod's next connection reuses its source port (Linux does, when it did not close first).
  const again = await f.run(f.progs.to_nic, podTcp(40000, TCP.SYN));
  t.equal(again.retval, TC_ACT_OK);
  t.equal(parsePacket(again.data).sport, port1, 'same NAT port: the remote sees the same 4-tuple, as without NAT');
  t.same(f.delta(), { 'snat-new': 1 }, 'counted as a new connection, not a hit');
  const entries = await f.dp.natEntries();
  t.equal(entries.length, 1);
  t.match(entries[0], { pod: { port: 40000 }, nat: { port: port1 }, closed: false, closeFlags: 0, orphan: false }, 'flags cleared: the established timeout again');
  t.equal((await f.map('snatRev').entries()).length, 1, 'still one reverse entry');
  t.equal(parsePacket((await f.run(f.progs.from_nic, remoteTcp(port1, TCP.SYN | TCP.ACK))).data).dport, 40000, 'replies reach the pod');

  // The same after FIN both ways (the remote closed first; its TIME_WAIT accepts the same tuple's new SYN).
  await f.run(f.progs.from_nic, remoteTcp(port1, TCP.FIN | TCP.ACK));
  await f.run(f.progs.to_nic, podTcp(40000, TCP.FIN | TCP.ACK));
  t.match(await f.dp.natEntries(), [{ closed: true, closeFlags: 3 }]);
  f.delta();
  t.equal(parsePacket((await f.run(f.progs.to_nic, podTcp(40000, TCP.SYN))).data).sport, port1);
  t.same(f.delta(), { 'snat-new': 1 });
  t.match(await f.dp.natEntries(), [{ closed: false, closeFlags: 0 }]);
});

t.test('FIN both ways: replies still flow, then the port is freed after the FIN timeout; FIN one way keeps it', { skip }, async (t) => {
  const f = await openFixture(t, 'close-fin', { ...ONE_PORT, timeouts: { tcpFinMs: 1000 } });
  await f.run(f.progs.to_nic, podTcp(40000, TCP.SYN));
  await f.run(f.progs.from_nic, remoteTcp(61000, TCP.SYN | TCP.ACK));
  await f.run(f.progs.to_nic, podTcp(40000, TCP.ACK));
  // The remote (server) closes first, the pod answers with its own FIN.
  const finIn = parsePacket((await f.run(f.progs.from_nic, remoteTcp(61000, TCP.FIN | TCP.ACK))).data);
  t.equal(finIn.dport, 40000, 'remote FIN translated');
  t.match(await f.dp.natEntries(), [{ closed: false, closeFlags: 2 }], 'FIN one way: half closed, still open');
  await sleep(1500);
  t.same(await f.dp.expireNat(), { nat: 0, inbound: 0 }, 'a half-closed pair keeps the established timeout');
  t.equal((await f.run(f.progs.to_nic, podTcp(40001, TCP.SYN))).retval, TC_ACT_SHOT, 'its port stays taken');
  f.delta();

  const finOut = parsePacket((await f.run(f.progs.to_nic, podTcp(40000, TCP.FIN | TCP.ACK))).data);
  t.equal(finOut.sport, 61000, 'pod FIN translated');
  t.equal(finOut.l4CsumOk, true);
  const lastAck = parsePacket((await f.run(f.progs.from_nic, remoteTcp(61000, TCP.ACK))).data);
  t.equal(lastAck.dst, POD1.ip, 'the last ACK reaches the pod');
  t.same(f.delta(), { 'snat-hit': 1, 'rev-snat': 1 });
  t.match(await f.dp.natEntries(), [{ closed: true, closeFlags: 3 }], 'FIN both ways');
  t.equal((await f.run(f.progs.to_nic, podTcp(40001, TCP.SYN))).retval, TC_ACT_SHOT, 'within the FIN timeout the port stays taken');
  f.delta();

  await sleep(1500);
  const next = await f.run(f.progs.to_nic, podTcp(40001, TCP.SYN));
  t.equal(next.retval, TC_ACT_OK);
  t.equal(parsePacket(next.data).sport, 61000, 'after the FIN timeout the port serves a new flow');
  t.same(f.delta(), { 'snat-new': 1 });
  t.match(await f.dp.natEntries(), [{ pod: { port: 40001 }, nat: { port: 61000 }, closed: false }]);
});

t.test('expireNat sweeps closed pairs on the short timeout and keeps open ones', { skip }, async (t) => {
  const f = await openFixture(t, 'close-sweep', { timeouts: { tcpRstMs: 1000, tcpFinMs: 1000 } });
  for (const sport of [40000, 40001, 40002]) await f.run(f.progs.to_nic, podTcp(sport, TCP.SYN));
  await f.run(f.progs.to_nic, podTcp(40000, TCP.RST | TCP.ACK));
  const nat = await f.dp.natEntries();
  const port1 = nat.find((e) => e.pod.port === 40001)!.nat.port;
  await f.run(f.progs.to_nic, podTcp(40001, TCP.FIN | TCP.ACK));
  await f.run(f.progs.from_nic, remoteTcp(port1, TCP.FIN | TCP.ACK));
  await sleep(1500);
  t.same(await f.dp.expireNat(), { nat: 2, inbound: 0 }, 'the reset and the closed pair are swept');
  t.same((await f.dp.natEntries()).map((e) => e.pod.port), [40002], 'the open pair stays');
  t.equal((await f.map('snatRev').entries()).length, 1);
});

t.test('a full NAT map: established flows keep translating, new flows take idle slots, nothing is dropped or crashes', { skip }, async (t) => {
  const f = await openFixture(t, 'natfull');
  const fwd = f.map('snatFwd');
  const rev = f.map('snatRev');
  const capacity = fwd.info().maxEntries;
  t.equal(rev.info().maxEntries, capacity, 'both directions have the same capacity');
  // Fill both maps with other pods' UDP pairs, idle since a moment ago (live for their 60 s timeout).
  const now = process.hrtime.bigint();
  for (let i = 0; i < capacity; i++) {
    const pod = `10.241.${(i >> 8) & 0xff}.${i & 0xff}`;
    const port = 61000 + (i % 4536);
    const remote = `198.51.${100 + Math.floor(i / 4536)}.1`;
    fwd.update(encodeNatTuple({ saddr: pod, daddr: remote, sport: 5000, dport: 53, proto: 17 }), encodeNatEntry({ addr: PRIMARY, port, flags: 0, lastSeenNs: now }));
    rev.update(encodeNatTuple({ saddr: PRIMARY, daddr: remote, sport: port, dport: 53, proto: 17 }), encodeNatEntry({ addr: pod, port: 5000, flags: 0, lastSeenNs: now }));
  }
  // An LRU map starts evicting a little before every node is used (per-CPU free lists): "full" is that.
  const filled = (await fwd.entries()).length;
  t.ok(filled > capacity * 0.9, `forward map full (${filled} of ${capacity}; the LRU evicts from here on)`);

  // An established TCP flow in the full map.
  const syn = buildPacket({ src: POD1.ip, dst: INTERNET, tcp: { sport: 40000, dport: 443, flags: TCP.SYN } });
  const natPort = parsePacket((await f.run(f.progs.to_nic, syn)).data).sport!;
  t.ok(inRange(natPort), 'the established flow got a port in the full map');
  f.delta();
  const ack = buildPacket({ src: POD1.ip, dst: INTERNET, tcp: { sport: 40000, dport: 443, flags: TCP.ACK } });
  const reply = buildPacket({ dstMac: HOST_DST_MAC, src: INTERNET, dst: PRIMARY, tcp: { sport: 443, dport: natPort, flags: TCP.ACK } });

  // New flows keep arriving while it talks: each needs a slot in both maps.
  const NEW_FLOWS = 1000;
  const broken: string[] = [];
  const unNatted: number[] = [];
  for (let i = 0; i < NEW_FLOWS; i++) {
    const out = parsePacket((await f.run(f.progs.to_nic, buildPacket({ src: POD1.ip, dst: INTERNET, udp: { sport: 10000 + i, dport: 123 } }))).data);
    if (out.src !== PRIMARY) unNatted.push(i);
    const a = parsePacket((await f.run(f.progs.to_nic, ack)).data);
    const r = parsePacket((await f.run(f.progs.from_nic, reply)).data);
    if (a.src !== PRIMARY || a.sport !== natPort || r.dst !== POD1.ip || r.dport !== 40000) broken.push(`after ${i}: out ${a.src}:${a.sport} back ${r.dst}:${r.dport}`);
  }
  t.same(broken.slice(0, 3), [], 'the established flow translated both ways, on its port, throughout');
  t.same(unNatted.slice(0, 3), [], 'every new flow was SNATed');
  t.same(f.delta(), { 'snat-new': NEW_FLOWS, 'snat-hit': NEW_FLOWS, 'rev-snat': NEW_FLOWS }, 'nothing dropped (no drop-nat-map-full, no drop-nat-port-exhausted)');
  t.ok((await fwd.entries()).length <= capacity, 'the map never exceeds its size');

  // The sweep (the daemon's, with the clock 2 min on) frees the idle UDP pairs and keeps the live TCP one.
  const swept = await f.dp.expireNat(process.hrtime.bigint() + 120_000_000_000n);
  t.ok(swept.nat >= capacity - NEW_FLOWS - 1, `idle pairs swept (${swept.nat})`);
  t.same((await f.dp.natEntries()).filter((e) => e.proto === 'tcp').map((e) => e.nat.port), [natPort], 'the TCP pair (3600 s timeout) kept');
});
