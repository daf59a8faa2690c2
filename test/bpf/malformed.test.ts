// Hostile and odd packets: truncated headers, bogus IHL, IP options,
// fragments. Each program must pass or drop them, and a passed packet must
// come out byte-for-byte unchanged (never half-rewritten).
import t from 'tap';
import { buildPacket, TCP } from './helpers/packet.js';
import { HOST_DST_MAC, INTERNET, POD1, PRIMARY, TC_ACT_OK, TC_ACT_SHOT, openFixture } from './helpers/fixture.js';
import { unavailableReason } from './helpers/env.js';

const skip = unavailableReason() ?? false;

function setTotLen(pkt: Buffer, len: number): Buffer {
  const b = Buffer.from(pkt);
  b.writeUInt16BE(len, 16);
  return b;
}

t.test('malformed packets are passed unchanged or dropped, by every program', { skip }, async (t) => {
  const f = await openFixture(t, 'malformed');
  const good = buildPacket({ src: POD1.ip, dst: INTERNET, tcp: { sport: 40000, dport: 443 } });
  const goodIn = buildPacket({ dstMac: HOST_DST_MAC, src: INTERNET, dst: PRIMARY, tcp: { sport: 443, dport: 61000 } });
  const cases: Array<[string, Buffer]> = [
    // BPF_PROG_TEST_RUN itself refuses IPv4 frames shorter than eth + iphdr,
    // so truncation is exercised from the L4 header on.
    ['IP header only, claims TCP', setTotLen(good.subarray(0, 14 + 20), 20)],
    ['truncated TCP header', good.subarray(0, 14 + 20 + 10)],
    ['IHL 3', buildPacket({ src: POD1.ip, dst: INTERNET, ihl: 3, tcp: { sport: 40000, dport: 443 } })],
    ['IHL 15 beyond the packet', buildPacket({ src: POD1.ip, dst: INTERNET, ihl: 15, payload: Buffer.alloc(0), udp: { sport: 1, dport: 2 } })],
    ['tot_len beyond the frame', setTotLen(good, 1400)],
    ['tot_len below the IP header', setTotLen(good, 12)],
    ['inbound, truncated TCP', goodIn.subarray(0, 14 + 20 + 6)],
  ];
  for (const [name, pkt] of cases) {
    for (const [pname, prog] of Object.entries(f.progs)) {
      const r = await f.run(prog, pkt, POD1.ifindex);
      t.ok(r.retval === TC_ACT_OK || r.retval === TC_ACT_SHOT, `${pname} / ${name}: pass or drop (got ${r.retval})`);
      if (r.retval === TC_ACT_OK) t.same(r.data, pkt, `${pname} / ${name}: passed unchanged`);
    }
  }
  const d = f.delta();
  t.ok((d['drop-malformed'] ?? 0) > 0, 'drops are counted as drop-malformed');
  t.equal((await f.dp.natEntries()).length, 0, 'no mapping from garbage');
});

t.test('IP options: never translated, never fast-pathed', { skip }, async (t) => {
  const f = await openFixture(t, 'ipopts');
  const nop4 = Buffer.from([1, 1, 1, 0]); // NOP NOP NOP EOL
  const out = buildPacket({ src: POD1.ip, dst: INTERNET, ipOptions: nop4, tcp: { sport: 40000, dport: 443 } });
  const r1 = await f.run(f.progs.to_nic, out);
  t.equal(r1.retval, TC_ACT_OK);
  t.same(r1.data, out);
  const r2 = await f.run(f.progs.from_pod, out, POD1.ifindex);
  t.equal(r2.retval, TC_ACT_OK, 'from_pod hands it to the stack');
  t.same(r2.data, out);
  const inb = buildPacket({ dstMac: HOST_DST_MAC, src: INTERNET, dst: POD1.ip, ipOptions: nop4, tcp: { sport: 443, dport: 80 } });
  const r3 = await f.run(f.progs.from_nic, inb);
  t.equal(r3.retval, TC_ACT_OK);
  t.same(r3.data, inb);
  t.same(f.delta(), { 'pass-ip-options': 3 });
});

t.test('fragments: later ones pass, a first fragment needing NAT is dropped, inbound replies pass', { skip }, async (t) => {
  const f = await openFixture(t, 'frags');
  const later = buildPacket({ src: POD1.ip, dst: INTERNET, fragOffset: 185, proto: 17, payload: Buffer.alloc(64, 7) });
  const r1 = await f.run(f.progs.to_nic, later);
  t.equal(r1.retval, TC_ACT_OK);
  t.same(r1.data, later, 'non-first fragment untouched');
  const first = buildPacket({ src: POD1.ip, dst: INTERNET, moreFragments: true, udp: { sport: 5000, dport: 53 } });
  const r2 = await f.run(f.progs.to_nic, first);
  t.equal(r2.retval, TC_ACT_SHOT, 'first fragment of a NAT flow: dropped, not half-translated');
  t.same(f.delta(), { 'pass-fragment': 1, 'drop-fragment-needs-nat': 1 });

  // A reply of an inbound UDP flow may be fragmented: it needs no NAT, so it passes.
  await f.run(f.progs.from_nic, buildPacket({ dstMac: HOST_DST_MAC, src: INTERNET, dst: POD1.ip, udp: { sport: 6000, dport: 7000 } }));
  f.delta();
  const replyFrag = buildPacket({ src: POD1.ip, dst: INTERNET, moreFragments: true, udp: { sport: 7000, dport: 6000 } });
  const r3 = await f.run(f.progs.to_nic, replyFrag);
  t.equal(r3.retval, TC_ACT_OK);
  t.same(r3.data, replyFrag);
  t.same(f.delta(), { 'pass-inbound-reply': 1 });

  // from_pod / from_nic hand fragments to the stack (conntrack cannot be checked for them).
  const podFrag = buildPacket({ src: POD1.ip, dst: '10.240.0.6', moreFragments: true, udp: { sport: 1, dport: 2 } });
  t.equal((await f.run(f.progs.from_pod, podFrag, POD1.ifindex)).retval, TC_ACT_OK);
  const nicFrag = buildPacket({ dstMac: HOST_DST_MAC, src: INTERNET, dst: POD1.ip, fragOffset: 10, proto: 17 });
  t.equal((await f.run(f.progs.from_nic, nicFrag)).retval, TC_ACT_OK);
  t.same(f.delta(), { 'pass-fragment': 2 });
  t.equal((await f.dp.natEntries()).length, 0);
});

t.test('TCP flags that may not open a mapping', { skip }, async (t) => {
  const f = await openFixture(t, 'flags');
  for (const flags of [TCP.ACK, TCP.RST, TCP.SYN | TCP.ACK, TCP.FIN | TCP.ACK, TCP.SYN | TCP.RST]) {
    const pkt = buildPacket({ src: POD1.ip, dst: INTERNET, tcp: { sport: 40000, dport: 443, flags } });
    t.same((await f.run(f.progs.to_nic, pkt)).data, pkt, `flags 0x${flags.toString(16)}: untouched`);
  }
  t.equal((await f.dp.natEntries()).length, 0);
});
