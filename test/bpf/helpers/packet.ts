// Builds and parses Ethernet/IPv4/TCP|UDP|ICMP frames for BPF_PROG_TEST_RUN,
// and checks checksums independently of the kernel.

export interface BuildOptions {
  srcMac?: string;
  dstMac?: string;
  src: string;
  dst: string;
  ttl?: number;
  ipId?: number;
  /** frag_off field flags/offset: moreFragments sets MF, fragOffset in 8-byte units. */
  moreFragments?: boolean;
  fragOffset?: number;
  /** Raw IP options (padded to 4 bytes by the caller). */
  ipOptions?: Buffer;
  /** Override the IHL nibble (bogus values). */
  ihl?: number;
  tcp?: { sport: number; dport: number; flags?: number; seq?: number };
  udp?: { sport: number; dport: number; zeroChecksum?: boolean };
  icmp?: { type: number; code?: number; id: number; seq?: number };
  proto?: number;
  payload?: Buffer;
}

export const TCP = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 } as const;
export const ETH_P_ARP = 0x0806;

export function ipBytes(ip: string): Buffer {
  return Buffer.from(ip.split('.').map(Number));
}
export function ipString(b: Buffer, off: number): string {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}
function macBytes(mac: string): Buffer {
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}
export function macString(b: Buffer, off: number): string {
  return [...b.subarray(off, off + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** RFC 1071 one's-complement sum, folded, not inverted. */
function sum16(buf: Buffer, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
  if (buf.length % 2) sum += buf[buf.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}
export function checksum(buf: Buffer, initial = 0): number {
  return ~sum16(buf, initial) & 0xffff;
}
function pseudoSum(src: Buffer, dst: Buffer, proto: number, len: number): number {
  const ph = Buffer.alloc(12);
  src.copy(ph, 0);
  dst.copy(ph, 4);
  ph[9] = proto;
  ph.writeUInt16BE(len, 10);
  return sum16(ph);
}

export function buildPacket(o: BuildOptions): Buffer {
  const payload = o.payload ?? Buffer.from('vnet-cni test payload');
  let l4: Buffer;
  let proto: number;
  const src = ipBytes(o.src);
  const dst = ipBytes(o.dst);
  if (o.tcp) {
    proto = 6;
    l4 = Buffer.alloc(20 + payload.length);
    l4.writeUInt16BE(o.tcp.sport, 0);
    l4.writeUInt16BE(o.tcp.dport, 2);
    l4.writeUInt32BE(o.tcp.seq ?? 1000, 4);
    l4[12] = 5 << 4;
    l4[13] = o.tcp.flags ?? TCP.SYN;
    l4.writeUInt16BE(65535, 14);
    payload.copy(l4, 20);
    l4.writeUInt16BE(checksum(l4, pseudoSum(src, dst, 6, l4.length)), 16);
  } else if (o.udp) {
    proto = 17;
    l4 = Buffer.alloc(8 + payload.length);
    l4.writeUInt16BE(o.udp.sport, 0);
    l4.writeUInt16BE(o.udp.dport, 2);
    l4.writeUInt16BE(l4.length, 4);
    payload.copy(l4, 8);
    if (!o.udp.zeroChecksum) l4.writeUInt16BE(checksum(l4, pseudoSum(src, dst, 17, l4.length)) || 0xffff, 6);
  } else if (o.icmp) {
    proto = 1;
    l4 = Buffer.alloc(8 + payload.length);
    l4[0] = o.icmp.type;
    l4[1] = o.icmp.code ?? 0;
    l4.writeUInt16BE(o.icmp.id, 4);
    l4.writeUInt16BE(o.icmp.seq ?? 1, 6);
    payload.copy(l4, 8);
    l4.writeUInt16BE(checksum(l4), 2);
  } else {
    proto = o.proto ?? 47;
    l4 = payload;
  }
  const options = o.ipOptions ?? Buffer.alloc(0);
  const ihlBytes = 20 + options.length;
  const ip = Buffer.alloc(ihlBytes);
  ip[0] = 0x40 | ((o.ihl ?? ihlBytes / 4) & 0xf);
  ip.writeUInt16BE(ihlBytes + l4.length, 2);
  ip.writeUInt16BE(o.ipId ?? 0x1234, 4);
  ip.writeUInt16BE((o.moreFragments ? 0x2000 : 0) | (o.fragOffset ?? 0), 6);
  ip[8] = o.ttl ?? 64;
  ip[9] = proto;
  src.copy(ip, 12);
  dst.copy(ip, 16);
  options.copy(ip, 20);
  ip.writeUInt16BE(checksum(ip), 10);
  const eth = Buffer.alloc(14);
  macBytes(o.dstMac ?? '00:00:00:00:00:00').copy(eth, 0);
  macBytes(o.srcMac ?? '02:00:00:00:00:01').copy(eth, 6);
  eth.writeUInt16BE(0x0800, 12);
  return Buffer.concat([eth, ip, l4]);
}

export function buildArp(srcMac: string, senderIp: string, targetIp: string): Buffer {
  const b = Buffer.alloc(42);
  b.fill(0xff, 0, 6);
  macBytes(srcMac).copy(b, 6);
  b.writeUInt16BE(ETH_P_ARP, 12);
  b.writeUInt16BE(1, 14);
  b.writeUInt16BE(0x0800, 16);
  b[18] = 6;
  b[19] = 4;
  b.writeUInt16BE(1, 20);
  macBytes(srcMac).copy(b, 22);
  ipBytes(senderIp).copy(b, 28);
  ipBytes(targetIp).copy(b, 38);
  return b;
}

export interface Parsed {
  dstMac: string;
  srcMac: string;
  src: string;
  dst: string;
  ttl: number;
  proto: number;
  ipCsumOk: boolean;
  /** null if there is no L4 header to check (fragment, unknown protocol). */
  l4CsumOk: boolean | null;
  sport?: number;
  dport?: number;
  icmpType?: number;
  icmpId?: number;
  udpChecksum?: number;
  tcpFlags?: number;
}

export function parsePacket(b: Buffer): Parsed {
  const ihl = (b[14]! & 0xf) * 4;
  const ip = b.subarray(14, 14 + ihl);
  const totLen = b.readUInt16BE(16);
  const l4 = b.subarray(14 + ihl, 14 + totLen);
  const proto = b[23]!;
  const fragmented = (b.readUInt16BE(20) & 0x3fff) !== 0;
  const p: Parsed = {
    dstMac: macString(b, 0),
    srcMac: macString(b, 6),
    src: ipString(b, 26),
    dst: ipString(b, 30),
    ttl: b[22]!,
    proto,
    ipCsumOk: checksum(ip) === 0,
    l4CsumOk: null,
  };
  if (fragmented) return p;
  const pseudo = pseudoSum(b.subarray(26, 30), b.subarray(30, 34), proto, l4.length);
  if (proto === 6) {
    p.sport = l4.readUInt16BE(0);
    p.dport = l4.readUInt16BE(2);
    p.tcpFlags = l4[13];
    p.l4CsumOk = checksum(l4, pseudo) === 0;
  } else if (proto === 17) {
    p.sport = l4.readUInt16BE(0);
    p.dport = l4.readUInt16BE(2);
    p.udpChecksum = l4.readUInt16BE(6);
    p.l4CsumOk = p.udpChecksum === 0 ? true : checksum(l4, pseudo) === 0;
  } else if (proto === 1) {
    p.icmpType = l4[0];
    p.icmpId = l4.readUInt16BE(4);
    p.l4CsumOk = checksum(l4) === 0;
  }
  return p;
}
