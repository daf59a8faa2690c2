// A reference model of the ebpf dataplane's forwarding and SNAT rules
// (docs/ebpf.md, "Packet walk"), for differential testing against the real
// programs under BPF_PROG_TEST_RUN. It predicts the verdict, the counter
// reasons, the output frame (byte for byte, checksums by RFC 1624) and keeps
// its own copy of the NAT and inbound-flow state.
//
// TCP close tracking is modelled (FIN/RST bits per pair; a SYN on a closed
// pair restarts it with the same port); the closing *timeouts* are not.
// Deliberately out of scope (the test environment makes them constant):
// timeouts (the suite's flows never go idle, and it configures the closing
// timeouts as long as the established one), kernel conntrack (the throwaway
// netns has no entries: always a miss) and the FIB (the netns holds only lo,
// so a lookup for a pod's ingress ifindex fails: "to the stack").
import { csumReplace, ETH_HLEN, ICMP_ECHO, ICMP_ECHOREPLY, IP_MF, IP_OFFSET, isFragment, macBuf, parse, PROTO, TCPF, words32, type ModelPkt } from './packet.js';
import { rulesAllow } from './policy.js';
import type { DirectionPolicy } from '../../../control/policy/types.js';

export const VERDICT = { OK: 0, SHOT: 2, REDIRECT: 7 } as const;
export type ProgName = 'from_pod' | 'to_pod' | 'to_nic' | 'from_nic';

/** One endpoint's policy as the model holds it (absent = none). */
export interface ModelPolicy {
  ingress: DirectionPolicy;
  egress: DirectionPolicy;
}
type PolVerdict = 'free' | 'established' | 'rule' | 'deny' | 'related-icmp' | 'related-fragment';
/** The counter label of an admitting verdict (free: none). */
const POL_LABEL: Record<Exclude<PolVerdict, 'deny'>, string[]> = {
  free: [],
  established: ['policy-established'],
  rule: ['policy-allow'],
  'related-icmp': ['policy-related-icmp'],
  'related-fragment': ['policy-related-fragment'],
};
/** ICMP errors whose quote relates them to a flow: destination unreachable, time exceeded, parameter problem. */
const ICMP_ERRORS = [3, 11, 12];
const SCTP = 132;

export interface ModelEndpoint {
  ip: number;
  ifindex: number;
  podMac: string;
  hostMac: string;
}

export interface ModelConfig {
  primaryIp: number;
  noSnat: Array<[number, number]>; // [network, prefix length]
  stack: Array<[number, number]>;
  fastPathExternal: boolean;
  natPortMin: number;
  natPortMax: number;
}

export interface Prediction {
  verdict: number;
  /** Counter labels bumped, in order. */
  reasons: string[];
  /** Expected output frame; null when the verdict is a drop (its bytes are unspecified). */
  data: Buffer | null;
}

/** Picks the NAT port for a new mapping: the test reads it from the real output. */
export type PortChooser = (free: number[]) => number | 'exhausted';

/** vnet_nat_entry.flags (bpf/include/vnet_maps.h VNET_NAT_F_*). */
export const NAT_F = { FIN_OUT: 1, FIN_IN: 2, RST: 4 } as const;
const closed = (flags: number): boolean => (flags & NAT_F.RST) !== 0 || (flags & (NAT_F.FIN_OUT | NAT_F.FIN_IN)) === (NAT_F.FIN_OUT | NAT_F.FIN_IN);
/** The close bits a TCP packet records on its pair; dirFin is the FIN bit of its direction. */
function closeBits(p: ModelPkt, dirFin: number): number {
  if (p.proto !== PROTO.TCP) return 0;
  return (p.tcpFlags & TCPF.RST ? NAT_F.RST : 0) | (p.tcpFlags & TCPF.FIN ? dirFin : 0);
}

const CIDR_NOSNAT = 1;
const CIDR_STACK = 2;

const tupleKey = (saddr: number, daddr: number, sport: number, dport: number, proto: number): string => `${saddr}|${daddr}|${sport}|${dport}|${proto}`;

export class DataplaneModel {
  readonly endpoints = new Map<number, ModelEndpoint>();
  /** fwd: pod tuple -> nat port; rev: {primary, remote, nat port, remote port, proto} -> {pod ip, pod port}. */
  readonly snatFwd = new Map<string, number>();
  readonly snatRev = new Map<string, { addr: number; port: number }>();
  /** fwd tuple -> NAT_F bits of the pair (TCP close tracking). */
  readonly closeFlags = new Map<string, number>();
  /** How often a SYN on a closed pair replaced its mapping (coverage, for the test). */
  synRestarts = 0;
  readonly inbound = new Set<string>();
  /** NetworkPolicy: per endpoint, and the connections an endpoint admitted ({local, remote, lport, rport, proto}). */
  readonly policies = new Map<number, ModelPolicy>();
  readonly polFlows = new Set<string>();

  constructor(readonly cfg: ModelConfig) {
    // Beyond 32 ports the program's bounded random probing may miss a free port: not predictable.
    if (cfg.natPortMax - cfg.natPortMin + 1 > 32) throw new RangeError('the model needs a NAT port range of at most 32 ports');
  }

  private cidrFlags(addr: number): number {
    let best = -1;
    let flags = 0;
    const consider = (list: Array<[number, number]>, f: number): void => {
      for (const [net, len] of list) {
        const mask = len === 0 ? 0 : (~0 << (32 - len)) >>> 0;
        if (((addr & mask) >>> 0) !== net) continue;
        if (len > best) {
          best = len;
          flags = f;
        } else if (len === best) flags |= f; // the same prefix in both sets: one LPM entry, both flags
      }
    };
    consider(this.cfg.noSnat, CIDR_NOSNAT);
    consider(this.cfg.stack, CIDR_STACK);
    return flags;
  }

  run(prog: ProgName, frame: Buffer, ingressIfindex: number, choosePort: PortChooser): Prediction {
    const p = parse(frame);
    if (prog === 'from_pod') return this.fromPod(p, frame, ingressIfindex);
    if (prog === 'to_pod') return this.toPod(p, frame);
    if (prog === 'to_nic') return this.toNic(p, frame, choosePort);
    return this.fromNic(p, frame);
  }

  /**
   * One policy check (docs/ebpf.md "NetworkPolicy"): no policy or neither direction isolated -> free; a connection
   * this endpoint admitted before -> established; this direction open -> free, recorded; the rules -> rule, recorded;
   * else, in an isolated direction, what conntrack calls RELATED: a later fragment of a datagram whose first fragment
   * this endpoint admitted (same peer, protocol and IP id), or an ICMP error quoting a packet of a recorded connection;
   * else deny. Ports: TCP/UDP/ICMP echo from the parser, SCTP from the first 4 bytes of its header. An admitted first
   * fragment in an isolated direction records its datagram.
   */
  private polCheck(p: ModelPkt, frame: Buffer, egress: boolean): PolVerdict {
    const local = egress ? p.saddr : p.daddr;
    const remote = egress ? p.daddr : p.saddr;
    const pol = this.policies.get(local);
    if (!pol || (!pol.ingress.isolated && !pol.egress.isolated)) return 'free';
    let ports: [number, number] | null = p.hasL4 ? [p.sport, p.dport] : null;
    if (!ports && p.proto === SCTP && p.ihl === 20 && (p.frag & IP_OFFSET) === 0 && p.totLen >= 32 && frame.length >= p.l4Off + 4) {
      ports = [frame.readUInt16BE(p.l4Off), frame.readUInt16BE(p.l4Off + 2)];
    }
    const [sport, dport] = ports ?? [0, 0];
    const key = p.proto === PROTO.ICMP ? tupleKey(local, remote, sport, 0, p.proto) : tupleKey(local, remote, egress ? sport : dport, egress ? dport : sport, p.proto);
    const dir = egress ? pol.egress : pol.ingress;
    const fragKey = `F|${tupleKey(local, remote, p.ipId, 0, p.proto)}`;
    let verdict: PolVerdict = 'free';
    if (this.polFlows.has(key)) verdict = 'established';
    else {
      if (dir.isolated) {
        const portForRules = ports && [PROTO.TCP, PROTO.UDP, SCTP].includes(p.proto) ? dport : null;
        if (!rulesAllow(dir, remote, p.proto, portForRules)) {
          if (p.frag & IP_OFFSET) return this.polFlows.has(fragKey) ? 'related-fragment' : 'deny';
          const quoted = icmpErrorFlow(p, frame, local);
          return quoted !== null && this.polFlows.has(quoted) ? 'related-icmp' : 'deny';
        }
        verdict = 'rule';
      }
      if ((p.frag & IP_OFFSET) === 0) this.polFlows.add(key); // a later fragment belongs to its datagram: no record of its own
    }
    if (!dir.isolated) return 'free';
    if ((p.frag & (IP_MF | IP_OFFSET)) === IP_MF) this.polFlows.add(fragKey);
    return verdict;
  }

  /** Counter labels of the checks, or null after a deny (whose label is last in `reasons`). */
  private polChecks(p: ModelPkt, frame: Buffer, checks: Array<'egress' | 'ingress'>, reasons: string[]): boolean {
    for (const c of checks) {
      const v = this.polCheck(p, frame, c === 'egress');
      if (v === 'deny') {
        reasons.push(c === 'egress' ? 'drop-policy-egress' : 'drop-policy-ingress');
        return false;
      }
      reasons.push(...POL_LABEL[v]);
    }
    return true;
  }

  private toPod(p: ModelPkt, frame: Buffer): Prediction {
    if (p.result === 'not-ipv4') return pass(frame);
    if (p.result === 'malformed') return drop('drop-malformed');
    const reasons: string[] = [];
    if (this.endpoints.has(p.saddr) && !this.polChecks(p, frame, ['egress'], reasons)) return { verdict: VERDICT.SHOT, reasons, data: null };
    const v = this.polCheck(p, frame, false);
    if (v !== 'deny') return { verdict: VERDICT.OK, reasons: [...reasons, ...POL_LABEL[v]], data: frame };
    // The node itself passes; kernel conntrack is empty in the test netns (no service replies).
    if (p.saddr === this.cfg.primaryIp) return { verdict: VERDICT.OK, reasons: [...reasons, 'policy-allow-host'], data: frame };
    return { verdict: VERDICT.SHOT, reasons: [...reasons, 'drop-policy-ingress'], data: null };
  }

  private fromPod(p: ModelPkt, frame: Buffer, ingressIfindex: number): Prediction {
    if (p.result === 'not-ipv4') return pass(frame);
    if (p.result === 'malformed') return drop('drop-malformed');
    const src = this.endpoints.get(p.saddr);
    if (!src || src.ifindex !== ingressIfindex) return drop('drop-spoofed-source');
    if (p.ihl !== 20) return pass(frame, 'pass-ip-options');
    if (isFragment(p)) return pass(frame, 'pass-fragment');
    if (p.ttl <= 1 || isMulticastOrBroadcast(p.daddr)) return pass(frame, 'pass-to-stack');
    const dst = this.endpoints.get(p.daddr);
    if (dst) {
      const reasons: string[] = [];
      if (!this.polChecks(p, frame, ['egress', 'ingress'], reasons)) return { verdict: VERDICT.SHOT, reasons, data: null };
      return forward(p, frame, dst, 'forwarded-local', reasons);
    }
    // Every other destination ends in the stack here: STACK cidrs, outside
    // the VNet by default, and the FIB miss of the throwaway netns.
    return pass(frame, 'pass-to-stack');
  }

  private toNic(p: ModelPkt, frame: Buffer, choosePort: PortChooser): Prediction {
    if (p.result === 'not-ipv4') return pass(frame);
    if (!this.endpoints.has(p.saddr)) return pass(frame); // the node's own traffic
    if (p.result === 'malformed') return drop('drop-malformed');
    const polReasons: string[] = [];
    if (!this.polChecks(p, frame, ['egress'], polReasons)) return { verdict: VERDICT.SHOT, reasons: polReasons, data: null };
    const r = this.toNicAfterPolicy(p, frame, choosePort);
    return { ...r, reasons: [...polReasons, ...r.reasons] };
  }

  private toNicAfterPolicy(p: ModelPkt, frame: Buffer, choosePort: PortChooser): Prediction {
    if (this.cidrFlags(p.daddr) & CIDR_NOSNAT) return pass(frame);
    if (p.ihl !== 20) return pass(frame, 'pass-ip-options');
    if (p.frag & IP_OFFSET) return pass(frame, 'pass-fragment');
    if (!p.hasL4 || (p.proto === PROTO.ICMP && p.icmpType !== ICMP_ECHO)) return pass(frame, 'pass-untracked');
    const fkey = tupleKey(p.saddr, p.daddr, p.sport, p.dport, p.proto);
    if (this.inbound.has(fkey)) return pass(frame, 'pass-inbound-reply');
    if (p.frag & IP_MF) return drop('drop-fragment-needs-nat');
    const existing = this.snatFwd.get(fkey);
    if (existing !== undefined && maySnat(p) && closed(this.closeFlags.get(fkey) ?? 0)) {
      // A new SYN on a closed pair: the pair restarts in place, same port, flags cleared.
      this.synRestarts++;
      this.closeFlags.set(fkey, 0);
      return { verdict: VERDICT.OK, reasons: ['snat-new'], data: rewriteNat(p, frame, true, this.cfg.primaryIp, existing) };
    }
    if (existing !== undefined) {
      this.closeFlags.set(fkey, (this.closeFlags.get(fkey) ?? 0) | closeBits(p, NAT_F.FIN_OUT));
      return { verdict: VERDICT.OK, reasons: ['snat-hit'], data: rewriteNat(p, frame, true, this.cfg.primaryIp, existing) };
    }
    if (!maySnat(p)) return pass(frame, 'pass-untracked');
    const free: number[] = [];
    for (let port = this.cfg.natPortMin; port <= this.cfg.natPortMax; port++) {
      if (!this.snatRev.has(tupleKey(this.cfg.primaryIp, p.daddr, port, p.dport, p.proto))) free.push(port);
    }
    if (free.length === 0) return drop('drop-nat-port-exhausted');
    // The range has at most 32 ports (constructor), so the program's 32 probes see every one: any free port is fine.
    const observed = choosePort(free);
    const chosen = observed !== 'exhausted' && free.includes(observed) ? observed : free[0]!;
    this.snatFwd.set(fkey, chosen);
    this.closeFlags.set(fkey, 0);
    this.snatRev.set(tupleKey(this.cfg.primaryIp, p.daddr, chosen, p.dport, p.proto), { addr: p.saddr, port: p.sport });
    return { verdict: VERDICT.OK, reasons: ['snat-new'], data: rewriteNat(p, frame, true, this.cfg.primaryIp, chosen) };
  }

  private fromNic(p: ModelPkt, frame: Buffer): Prediction {
    if (!isHostFrame(frame)) return pass(frame);
    if (p.result !== 'ok') return pass(frame);
    if (p.daddr === this.cfg.primaryIp) return this.revSnat(p, frame);
    const ep = this.endpoints.get(p.daddr);
    if (!ep) return pass(frame);
    if (p.ihl !== 20) return pass(frame, 'pass-ip-options');
    if (isFragment(p)) return pass(frame, 'pass-fragment');
    const reasons: string[] = [];
    if (!this.polChecks(p, frame, ['ingress'], reasons)) return { verdict: VERDICT.SHOT, reasons, data: null };
    if (p.hasL4 && (p.proto === PROTO.TCP || p.proto === PROTO.UDP) && !(this.cidrFlags(p.saddr) & CIDR_NOSNAT)) {
      this.inbound.add(tupleKey(p.daddr, p.saddr, p.dport, p.sport, p.proto));
    }
    return forward(p, frame, ep, 'forwarded-from-nic', reasons);
  }

  private revSnat(p: ModelPkt, frame: Buffer): Prediction {
    if (!p.hasL4 || isFragment(p) || (p.proto === PROTO.ICMP && p.icmpType !== ICMP_ECHOREPLY)) return pass(frame);
    const icmp = p.proto === PROTO.ICMP;
    const rkey = tupleKey(p.daddr, p.saddr, icmp ? p.sport : p.dport, icmp ? 0 : p.sport, p.proto);
    const rev = this.snatRev.get(rkey);
    if (!rev) return pass(frame);
    const fkey = tupleKey(rev.addr, p.saddr, rev.port, icmp ? 0 : p.sport, p.proto);
    this.closeFlags.set(fkey, (this.closeFlags.get(fkey) ?? 0) | closeBits(p, NAT_F.FIN_IN));
    const data = rewriteNat(p, frame, false, rev.addr, rev.port);
    const ep = this.endpoints.get(rev.addr);
    if (!ep) return { verdict: VERDICT.SHOT, reasons: ['rev-snat', 'drop-no-endpoint'], data: null };
    if (!this.cfg.fastPathExternal) return { verdict: VERDICT.OK, reasons: ['rev-snat'], data };
    const rewritten = parse(data);
    const reasons = ['rev-snat'];
    if (!this.polChecks(rewritten, data, ['ingress'], reasons)) return { verdict: VERDICT.SHOT, reasons, data: null };
    return forward(rewritten, data, ep, 'forwarded-from-nic', reasons);
  }
}

/**
 * The policy flow key (as `local` holds it) of the packet an ICMP error quotes, or null: the error is destination
 * unreachable, time exceeded or parameter problem (outer header without options, not a later fragment); the quote
 * is an IPv4 header (its options skipped, not a later fragment) and 8 bytes of TCP/UDP/SCTP ports or an ICMP echo,
 * all within the datagram; one of its addresses is `local` (the source: local sent it; else the destination).
 */
function icmpErrorFlow(p: ModelPkt, frame: Buffer, local: number): string | null {
  if (p.proto !== PROTO.ICMP || p.ihl !== 20 || (p.frag & IP_OFFSET) !== 0 || !ICMP_ERRORS.includes(p.icmpType)) return null;
  const inner = ETH_HLEN + 20 + 8;
  if (frame.length < inner + 20 || frame[inner]! >> 4 !== 4 || (frame[inner]! & 0xf) < 5 || (frame.readUInt16BE(inner + 6) & IP_OFFSET) !== 0) return null;
  const l4 = inner + (frame[inner]! & 0xf) * 4;
  if (l4 + 8 > ETH_HLEN + p.totLen || l4 + 8 > frame.length) return null;
  const [isrc, idst, iproto] = [frame.readUInt32BE(inner + 12), frame.readUInt32BE(inner + 16), frame[inner + 9]!];
  if (isrc !== local && idst !== local) return null;
  const mine = isrc === local;
  const remote = mine ? idst : isrc;
  if (iproto === PROTO.ICMP) {
    return frame[l4] === ICMP_ECHO || frame[l4] === ICMP_ECHOREPLY ? tupleKey(local, remote, frame.readUInt16BE(l4 + 4), 0, iproto) : null;
  }
  if (iproto !== PROTO.TCP && iproto !== PROTO.UDP && iproto !== SCTP) return null;
  const [s, d] = [frame.readUInt16BE(l4), frame.readUInt16BE(l4 + 2)];
  return tupleKey(local, remote, mine ? s : d, mine ? d : s, iproto);
}

function pass(frame: Buffer, reason?: string): Prediction {
  return { verdict: VERDICT.OK, reasons: reason ? [reason] : [], data: frame };
}
function drop(reason: string): Prediction {
  return { verdict: VERDICT.SHOT, reasons: [reason], data: null };
}

function isMulticastOrBroadcast(addr: number): boolean {
  return (addr & 0xf0000000) >>> 0 === 0xe0000000 || addr === 0xffffffff;
}

/** BPF_PROG_TEST_RUN runs eth_type_trans against lo (all-zero MAC): only that destination is PACKET_HOST. */
function isHostFrame(frame: Buffer): boolean {
  return frame.subarray(0, 6).equals(Buffer.alloc(6));
}

function maySnat(p: ModelPkt): boolean {
  if (p.proto === PROTO.TCP) return (p.tcpFlags & (TCPF.SYN | TCPF.ACK | TCPF.RST)) === TCPF.SYN;
  if (p.proto === PROTO.UDP) return true;
  return p.proto === PROTO.ICMP && p.icmpType === ICMP_ECHO;
}

/** A router hop into a pod: TTL-1 with the IP checksum fixed, pod MAC / host veth MAC. TTL <= 1 goes to the stack. */
function forward(p: ModelPkt, frame: Buffer, ep: ModelEndpoint, reason: string, before: string[]): Prediction {
  if (p.ttl <= 1) return { verdict: VERDICT.OK, reasons: [...before, 'pass-to-stack'], data: frame };
  const out = Buffer.from(frame);
  const oldWord = (p.ttl << 8) | p.proto;
  const newWord = ((p.ttl - 1) << 8) | p.proto;
  out.writeUInt16BE(csumReplace(out.readUInt16BE(ETH_HLEN + 10), [oldWord], [newWord]), ETH_HLEN + 10);
  out[ETH_HLEN + 8] = p.ttl - 1;
  macBuf(ep.podMac).copy(out, 0);
  macBuf(ep.hostMac).copy(out, 6);
  return { verdict: VERDICT.REDIRECT, reasons: [...before, reason], data: out };
}

/** Replace the source (egress) or destination (ingress) address and port/echo id, with checksum fixups. */
function rewriteNat(p: ModelPkt, frame: Buffer, src: boolean, newAddr: number, newPort: number): Buffer {
  const out = Buffer.from(frame);
  const icmp = p.proto === PROTO.ICMP;
  const oldAddr = src ? p.saddr : p.daddr;
  const oldPort = icmp ? p.sport : src ? p.sport : p.dport;
  const csumOff = p.l4Off + (p.proto === PROTO.TCP ? 16 : p.proto === PROTO.UDP ? 6 : 2);
  const udpNoCsum = p.proto === PROTO.UDP && out.readUInt16BE(csumOff) === 0;
  const l4Replace = (oldW: number[], newW: number[]): void => {
    if (udpNoCsum) return; // a zero UDP checksum means "none" and stays zero
    let c = csumReplace(out.readUInt16BE(csumOff), oldW, newW);
    if (p.proto === PROTO.UDP && c === 0) c = 0xffff;
    out.writeUInt16BE(c, csumOff);
  };
  if (oldAddr !== newAddr) {
    if (!icmp) l4Replace(words32(oldAddr), words32(newAddr)); // pseudo header
    out.writeUInt16BE(csumReplace(out.readUInt16BE(ETH_HLEN + 10), words32(oldAddr), words32(newAddr)), ETH_HLEN + 10);
    out.writeUInt32BE(newAddr, src ? 26 : 30);
  }
  if (oldPort !== newPort) {
    l4Replace([oldPort], [newPort]);
    out.writeUInt16BE(newPort, icmp ? p.l4Off + 4 : p.l4Off + (src ? 0 : 2));
  }
  return out;
}
