// Generated frames for the BPF differential fuzzer: plausible traffic from a
// small pool of addresses and ports (so flows repeat, hit mappings and
// exhaust ports), replies to flows seen so far, and malformed mutations.
import { buildPacket, type BuildOptions } from '../../bpf/helpers/packet.js';
import { HOST_DST_MAC, INTERNET, PEERED, POD1, POD2, PRIMARY, VNET_HOST, WIRESERVER } from '../../bpf/helpers/fixture.js';
import type { ProgName } from '../model/dataplane.js';
import { ipStr } from '../model/packet.js';
import type { Rng } from './scale.js';

export interface GenPacket {
  prog: ProgName;
  frame: Buffer;
  ingressIfindex: number;
  /** What was done to it, for the fault table. */
  kind: string;
}

/** A remembered flow, in egress orientation (pod -> remote). */
export interface Flow {
  pod: string;
  remote: string;
  podPort: number;
  remotePort: number;
  proto: 'tcp' | 'udp' | 'icmp';
}

const SERVICE_IP = '10.96.0.10';
const REMOTES = [INTERNET, '198.51.100.77', PEERED, VNET_HOST, WIRESERVER, SERVICE_IP, '10.240.0.9', '224.0.0.251', '255.255.255.255'];
const PODS = [POD1.ip, POD2.ip];
const POD_PORTS = [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000, 11000, 12000];
const REMOTE_PORTS = [53, 80, 443];
const OTHER_MACS = ['ff:ff:ff:ff:ff:ff', '01:00:5e:00:00:fb', '02:aa:bb:cc:dd:ee'];

/** A first fragment generated, so later fragments of the same datagram can follow (policy run). */
interface FirstFragment {
  prog: ProgName;
  src: string;
  dst: string;
  proto: number;
  id: number;
}

export class PacketGenerator {
  readonly flows: Flow[] = [];
  private readonly firstFragments: FirstFragment[] = [];

  /** withToPod: also frames for to_pod (what the stack delivers to a pod), for the NetworkPolicy run. */
  constructor(
    private readonly rng: Rng,
    private readonly withToPod = false,
  ) {}

  private addr(pool: readonly string[]): string {
    const r = this.rng;
    return r.chance(0.05) ? ipStr((r.int(0xffffffff) + 1) >>> 0) : r.pick(pool);
  }

  private l4(o: BuildOptions, proto: Flow['proto'], sport: number, dport: number, reply: boolean): void {
    const r = this.rng;
    if (proto === 'tcp') {
      const flags = reply ? r.pick([0x12, 0x10, 0x11, 0x14]) : r.pick([0x02, 0x02, 0x02, 0x10, 0x12, 0x04, 0x06, 0x11, r.int(256)]);
      o.tcp = { sport, dport, flags, seq: r.int(0xffffffff) };
    } else if (proto === 'udp') o.udp = { sport, dport, zeroChecksum: r.chance(0.15) };
    else {
      const type = reply ? (r.chance(0.9) ? 0 : 8) : r.chance(0.85) ? 8 : r.pick([0, 3, 11, 13, 255]);
      o.icmp = { type, code: r.chance(0.9) ? 0 : r.int(256), id: sport, seq: r.int(65536) };
    }
  }

  private ipExtras(o: BuildOptions, prog: ProgName, keepPayload = false): string[] {
    const r = this.rng;
    const tags: string[] = [];
    o.ttl = r.chance(0.08) ? r.pick([0, 1, 2]) : r.pick([64, 255, 17]);
    o.ipId = r.int(65536);
    if (r.chance(0.05)) {
      o.ipOptions = Buffer.from([1, 1, 1, 0]);
      tags.push('ip-options');
    }
    // The policy run fragments more: later fragments follow an admitted first one only if there is one.
    if (r.chance(this.withToPod ? 0.12 : 0.05)) {
      o.moreFragments = true;
      tags.push('first-fragment');
      if (this.withToPod && (prog === 'to_nic' || prog === 'to_pod')) this.firstFragments.push({ prog, src: o.src, dst: o.dst, proto: protoOf(o), id: o.ipId });
      if (this.firstFragments.length > 64) this.firstFragments.shift();
    } else if (r.chance(0.04)) {
      o.fragOffset = r.range(1, 0x1fff);
      o.moreFragments = r.chance(0.5);
      tags.push('later-fragment');
    }
    if (r.chance(0.5) && !keepPayload) o.payload = this.rng.bytes(r.int(64));
    return tags;
  }

  private protoOf(): Flow['proto'] | 'other' {
    return this.rng.pick(['tcp', 'tcp', 'udp', 'udp', 'icmp', 'other'] as const);
  }

  /** One packet: a new or repeated flow, or a reply to one, then maybe a mutation. */
  next(): GenPacket {
    const r = this.rng;
    const prog: ProgName = this.withToPod ? r.pick(['from_pod', 'to_pod', 'to_nic', 'to_nic', 'from_nic', 'from_nic'] as const) : r.pick(['from_pod', 'to_nic', 'to_nic', 'from_nic', 'from_nic'] as const);
    // The policy run: now and then the rest of a datagram whose first fragment went through to_nic/to_pod, there again.
    if (this.withToPod && this.firstFragments.length && r.chance(0.08)) {
      const first = r.pick(this.firstFragments.slice(-4));
      const o: BuildOptions = { src: first.src, dst: first.dst, ipId: first.id, proto: first.proto, fragOffset: r.range(1, 0x1fff), moreFragments: r.chance(0.5), payload: r.bytes(r.range(8, 64)) };
      return { prog: first.prog, frame: buildPacket(o), ingressIfindex: POD1.ifindex, kind: 'later-fragment+of-a-first' };
    }
    let o: BuildOptions;
    let kind: string;
    const known = this.flows.length > 0 && r.chance(0.45) ? r.pick(this.flows) : undefined;
    if (prog === 'to_pod') {
      // What the stack delivers to a pod: replies to its flows, the node itself, other pods, the outside.
      if (known && r.chance(0.6)) {
        o = { src: known.remote, dst: known.pod };
        this.l4(o, known.proto, known.proto === 'icmp' ? known.podPort : known.remotePort, known.podPort, true);
        kind = 'to-pod-reply';
      } else {
        const proto = this.protoOf();
        o = { src: this.addr([...REMOTES, ...PODS, PRIMARY, PRIMARY]), dst: this.addr([...PODS, ...PODS, VNET_HOST]) };
        if (proto === 'other') o.proto = r.pick([47, 50, 132, 0]);
        else {
          const remotePort = r.pick(REMOTE_PORTS);
          const podPort = r.pick(POD_PORTS);
          this.l4(o, proto, remotePort, podPort, false);
          if (proto !== 'icmp') this.flows.push({ pod: o.dst, remote: o.src, podPort, remotePort, proto });
        }
        kind = 'to-pod';
      }
    } else if (prog === 'from_nic') {
      const reply = known && known.proto !== 'icmp' ? known : undefined;
      if (known && r.chance(0.6)) {
        // A reply to an SNATed flow: to the primary IP, at whatever NAT port it got (guessed from the range).
        const natPort = 61000 + r.int(8);
        o = { src: known.remote, dst: PRIMARY, dstMac: HOST_DST_MAC };
        this.l4(o, known.proto, known.proto === 'icmp' ? natPort : known.remotePort, natPort, true);
        kind = 'reply-to-nat';
      } else if (reply && r.chance(0.3)) {
        o = { src: reply.remote, dst: reply.pod, dstMac: HOST_DST_MAC };
        this.l4(o, reply.proto, reply.remotePort, reply.podPort, false);
        kind = 'inbound-known';
      } else {
        const proto = this.protoOf();
        o = { src: this.addr(REMOTES), dst: this.addr([...PODS, PRIMARY, PRIMARY, VNET_HOST]), dstMac: r.chance(0.85) ? HOST_DST_MAC : r.pick(OTHER_MACS) };
        if (proto === 'other') o.proto = r.pick([47, 50, 132, 0]);
        else {
          const remotePort = r.pick(REMOTE_PORTS);
          const podPort = r.pick(POD_PORTS);
          this.l4(o, proto, remotePort, podPort, false);
          if (proto !== 'icmp' && o.dst !== PRIMARY) this.flows.push({ pod: o.dst, remote: o.src, podPort, remotePort, proto });
        }
        kind = 'inbound';
      }
    } else {
      if (known && r.chance(0.7)) {
        o = { src: known.pod, dst: known.remote };
        this.l4(o, known.proto, known.podPort, known.remotePort, r.chance(0.2));
        kind = 'flow-repeat';
      } else {
        const proto = this.protoOf();
        o = { src: r.chance(0.9) ? r.pick(PODS) : this.addr([PRIMARY, '10.240.0.8']), dst: this.addr(prog === 'from_pod' ? [...REMOTES, ...PODS, ...PODS] : REMOTES) };
        if (proto === 'other') o.proto = r.pick([47, 50, 132, 0]);
        else {
          const podPort = r.pick(POD_PORTS);
          const remotePort = r.pick(REMOTE_PORTS);
          this.l4(o, proto, podPort, remotePort, false);
          this.flows.push({ pod: o.src, remote: o.dst, podPort, remotePort, proto });
        }
        kind = 'outbound';
      }
      o.srcMac = POD1.podMac;
    }
    if (this.withToPod && this.flows.length && r.chance(0.3)) ({ o, kind } = this.icmpError(prog, r.pick(this.flows.slice(-40))));
    if (this.flows.length > 4000) this.flows.splice(0, 1000); // bounded memory
    const tags = this.ipExtras(o, prog, kind === 'icmp-error');
    let frame = buildPacket(o);
    const mutation = r.chance(0.25) ? this.mutate(frame) : undefined;
    if (mutation) frame = mutation.frame;
    const ingress = prog === 'from_pod' ? r.pick([POD1.ifindex, POD1.ifindex, POD2.ifindex, POD2.ifindex, 7]) : POD1.ifindex;
    return { prog, frame, ingressIfindex: ingress, kind: [kind, ...tags, ...(mutation ? [mutation.name] : [])].join('+') };
  }

  /**
   * An ICMP error quoting a packet of a known flow (the policy run): into the pod about what it sent (from a router
   * or the remote), or from the pod about what it received. Mostly types that relate (3, 11, 12), sometimes a
   * redirect; the quote is the usual IP header + 8 bytes, sometimes shorter or longer.
   */
  private icmpError(prog: GenPacket['prog'], flow: Flow): { o: BuildOptions; kind: string } {
    const r = this.rng;
    const toPod = prog === 'from_nic' || prog === 'to_pod';
    const quoted: BuildOptions = toPod ? { src: flow.pod, dst: flow.remote } : { src: flow.remote, dst: flow.pod };
    this.l4(quoted, flow.proto, toPod ? flow.podPort : flow.remotePort, toPod ? flow.remotePort : flow.podPort, false);
    if (flow.proto === 'icmp') quoted.icmp = { type: r.pick([8, 0]), id: flow.podPort };
    const q = buildPacket(quoted).subarray(14);
    const payload = q.subarray(0, r.chance(0.85) ? 28 : r.chance(0.5) ? r.range(20, 27) : q.length);
    const type = r.pick([3, 3, 11, 12, 5]);
    // Routers on many addresses: an error from one peer admitted (or recorded) once says nothing about the next.
    const router = `${r.pick(['10.240.9', '203.0.113', '172.16.1'])}.${r.range(1, 254)}`;
    const o: BuildOptions = toPod
      ? { src: r.chance(0.7) ? router : flow.remote, dst: flow.pod, ...(prog === 'from_nic' ? { dstMac: HOST_DST_MAC } : {}) }
      : { src: flow.pod, dst: r.chance(0.5) ? flow.remote : router, srcMac: POD1.podMac };
    o.icmp = { type, code: r.pick([0, 1, 3, 4]), id: 0, seq: 1400 };
    o.payload = Buffer.from(payload);
    return { o, kind: 'icmp-error' };
  }

  /** Malformed frames. BPF_PROG_TEST_RUN refuses IPv4 frames shorter than eth + iphdr (IPv6: + ipv6hdr). */
  private mutate(frame: Buffer): { frame: Buffer; name: string } {
    const r = this.rng;
    const b = Buffer.from(frame);
    switch (r.int(9)) {
      case 0:
        return { frame: b.subarray(0, r.range(34, b.length)), name: 'truncated' };
      case 1: {
        const n = r.range(1, 4);
        for (let i = 0; i < n; i++) b[r.range(14, b.length - 1)] = r.int(256);
        return { frame: b, name: 'bytes-flipped' };
      }
      case 2:
        b[14] = (b[14]! & 0xf0) | r.int(16);
        return { frame: b, name: 'bogus-ihl' };
      case 3:
        b.writeUInt16BE(r.chance(0.5) ? r.int(65536) : r.int(40), 16);
        return { frame: b, name: 'bogus-tot-len' };
      case 4:
        b[14] = (r.int(16) << 4) | (b[14]! & 0xf);
        return { frame: b, name: 'bogus-version' };
      case 5: {
        const type = r.pick([0x0806, 0x86dd, 0x8100, 0x88cc, r.int(65536)]);
        b.writeUInt16BE(type === 0x0800 ? 0x0801 : type, 12);
        return { frame: b.length >= 54 ? b : Buffer.concat([b, Buffer.alloc(54 - b.length)]), name: 'not-ipv4' };
      }
      case 6:
        return { frame: Buffer.concat([b, r.bytes(r.range(1, 40))]), name: 'trailing-padding' };
      case 7: {
        // TCP data offset below 5, or a zero-length header.
        b[14 + 20 + 12] = r.int(5) << 4;
        return { frame: b, name: 'bogus-tcp-doff' };
      }
      default: {
        const len = r.range(34, 200);
        const junk = Buffer.concat([b.subarray(0, 14), r.bytes(len - 14)]);
        junk[14] = 0x45;
        return { frame: junk, name: 'random-ipv4' };
      }
    }
  }
}

function protoOf(o: BuildOptions): number {
  return o.tcp ? 6 : o.udp ? 17 : o.icmp ? 1 : (o.proto ?? 47);
}
