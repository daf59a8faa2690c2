// The reference model's view of a frame: a TS port of the *contract* of
// bpf/lib/pkt.h (what the programs may assume about a parsed packet), plus
// RFC 1624 incremental checksum updates. Written from docs/ebpf.md and the
// header comments, independently of the C code paths that use it.

export const ETH_HLEN = 14;
export const IP_MF = 0x2000;
export const IP_OFFSET = 0x1fff;
export const PROTO = { ICMP: 1, TCP: 6, UDP: 17 } as const;
export const ICMP_ECHOREPLY = 0;
export const ICMP_ECHO = 8;
export const TCPF = { FIN: 0x01, SYN: 0x02, RST: 0x04, ACK: 0x10 } as const;

export type ParseResult = 'ok' | 'not-ipv4' | 'malformed';

/** Addresses are numbers (host order, unsigned); ports are host order. */
export interface ModelPkt {
  result: ParseResult;
  saddr: number;
  daddr: number;
  totLen: number;
  frag: number;
  ihl: number;
  ttl: number;
  proto: number;
  sport: number;
  dport: number;
  hasL4: boolean;
  tcpFlags: number;
  icmpType: number;
  l4Off: number;
  /** IP identification (host order) */
  ipId: number;
}

export function parse(b: Buffer): ModelPkt {
  const p: ModelPkt = { result: 'ok', saddr: 0, daddr: 0, totLen: 0, frag: 0, ihl: 0, ttl: 0, proto: 0, sport: 0, dport: 0, hasL4: false, tcpFlags: 0, icmpType: 0, l4Off: 0, ipId: 0 };
  if (b.length < ETH_HLEN || b.readUInt16BE(12) !== 0x0800) return { ...p, result: 'not-ipv4' };
  if (b.length < ETH_HLEN + 20) return { ...p, result: 'malformed' };
  p.saddr = b.readUInt32BE(26);
  p.daddr = b.readUInt32BE(30);
  const version = b[14]! >> 4;
  const ihlWords = b[14]! & 0xf;
  if (version !== 4 || ihlWords < 5) return { ...p, result: 'malformed' };
  p.ihl = ihlWords * 4;
  p.totLen = b.readUInt16BE(16);
  // Ethernet padding may follow tot_len; the datagram may never exceed the frame.
  if (p.totLen < p.ihl || p.totLen + ETH_HLEN > b.length) return { ...p, result: 'malformed' };
  p.ttl = b[22]!;
  p.proto = b[23]!;
  p.frag = b.readUInt16BE(20);
  p.ipId = b.readUInt16BE(18);
  p.l4Off = ETH_HLEN + p.ihl;
  if (p.ihl !== 20 || (p.frag & IP_OFFSET) !== 0) return p; // options / later fragment: no ports
  const l4 = ETH_HLEN + 20;
  if (p.proto === PROTO.TCP) {
    if (p.totLen < 40 || b.length < l4 + 20) return { ...p, result: 'malformed' };
    if (b[l4 + 12]! >> 4 < 5) return { ...p, result: 'malformed' };
    p.sport = b.readUInt16BE(l4);
    p.dport = b.readUInt16BE(l4 + 2);
    p.tcpFlags = b[l4 + 13]!;
    p.hasL4 = true;
  } else if (p.proto === PROTO.UDP) {
    if (p.totLen < 28 || b.length < l4 + 8) return { ...p, result: 'malformed' };
    p.sport = b.readUInt16BE(l4);
    p.dport = b.readUInt16BE(l4 + 2);
    p.hasL4 = true;
  } else if (p.proto === PROTO.ICMP) {
    if (p.totLen < 28 || b.length < l4 + 8) return { ...p, result: 'malformed' };
    p.icmpType = b[l4]!;
    if (p.icmpType === ICMP_ECHO || p.icmpType === ICMP_ECHOREPLY) {
      p.sport = b.readUInt16BE(l4 + 4);
      p.dport = 0;
      p.hasL4 = true;
    }
  }
  return p;
}

export const isFragment = (p: ModelPkt): boolean => (p.frag & (IP_MF | IP_OFFSET)) !== 0;

/** RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), over 16-bit words. */
export function csumReplace(check: number, oldWords: number[], newWords: number[]): number {
  let sum = ~check & 0xffff;
  for (const w of oldWords) sum += ~w & 0xffff;
  for (const w of newWords) sum += w;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export const words32 = (v: number): number[] => [(v >>> 16) & 0xffff, v & 0xffff];

/** Two checksums are equal in one's complement arithmetic (0 and 0xffff are both zero). */
export function csumEquivalent(a: number, b: number): boolean {
  const norm = (x: number): number => (x === 0xffff ? 0 : x);
  return norm(a) === norm(b);
}

export function ipNum(ip: string): number {
  return ip.split('.').reduce((acc, o) => ((acc << 8) | Number(o)) >>> 0, 0);
}
export function ipStr(n: number): string {
  return [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff].join('.');
}
export function macBuf(mac: string): Buffer {
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}
