// TS encoders/decoders for the map layouts of bpf/include/vnet_maps.h. The
// header is the source of truth; test/bpf/layouts.test.ts checks these
// sizes and offsets against the addon (same header) and the kernel's maps.
// Addresses and ports are network byte order in the maps, the rest host order.
import { InvalidConfigError } from '../../errors.js';
import { bytesToIpv4, ipv4ToBytes } from '../../../cni/ip.js';

export const MAPS = {
  endpoints: 'vnet_endpoints',
  cidrs: 'vnet_cidrs',
  config: 'vnet_config',
  snatFwd: 'vnet_snat_fwd',
  snatRev: 'vnet_snat_rev',
  inbound: 'vnet_inbound',
  counters: 'vnet_reasons',
  polEps: 'vnet_pol_eps',
  polIds: 'vnet_pol_ids',
  polCidrs: 'vnet_pol_cidrs',
  polPorts: 'vnet_pol_ports',
  polFlows: 'vnet_pol_flows',
  polDrops: 'vnet_pol_drops',
} as const;
export type MapKey = keyof typeof MAPS;

export const PROGRAMS = { fromPod: 'from_pod', toPod: 'to_pod', toNic: 'to_nic', fromNic: 'from_nic' } as const;

export const SIZES = {
  endpointKey: 4,
  endpoint: 20,
  lpmKey: 8,
  cidrInfo: 4,
  configKey: 4,
  config: 64,
  natTuple: 16,
  natEntry: 16,
  flowEntry: 8,
  counterKey: 4,
  counter: 8,
  polEpKey: 20,
  polEp: 12,
  polIdKey: 4,
  polIdVal: 16,
  polCidrKey: 28,
  polMatch: 4,
  polPortKey: 16,
  polPortVal: 4,
  polFlowKey: 40,
} as const;

/** vnet_reasons slots (VNET_COUNTERS_MAX): more than there are reasons, so appending one keeps the map definition. */
export const COUNTERS_MAX = 64;

/** vnet_config.flags */
export const CFG_F = { READY: 1, FASTPATH_EXTERNAL: 2, CT_CHECK: 4 } as const;
/** vnet_config.ctl_flags (bookkeeping of the control plane; programs ignore it) */
export const CTL_F = { NIC_HOOK_CREATED: 1 } as const;
/** vnet_nat_entry.flags: TCP close tracking (both entries of a pair carry the pair's bits) */
export const NAT_F = { FIN_OUT: 1, FIN_IN: 2, RST: 4 } as const;
/** RST either way, or FIN both ways: the pair is on its short closing timeout. */
export function natClosed(flags: number): boolean {
  return (flags & NAT_F.RST) !== 0 || (flags & (NAT_F.FIN_OUT | NAT_F.FIN_IN)) === (NAT_F.FIN_OUT | NAT_F.FIN_IN);
}
/** vnet_cidr_info.flags */
export const CIDR_F = { NOSNAT: 1, STACK: 2 } as const;

export const IPPROTO = { ICMP: 1, TCP: 6, UDP: 17 } as const;
export type ProtoName = 'icmp' | 'tcp' | 'udp';
export function protoName(proto: number): ProtoName | `proto-${number}` {
  return proto === 6 ? 'tcp' : proto === 17 ? 'udp' : proto === 1 ? 'icmp' : `proto-${proto}`;
}

// ---- addresses ---------------------------------------------------------

/** 4 bytes in wire order (cni/ip.ts does the parsing). */
export function ipToBytes(ip: string): Buffer {
  const b = ipv4ToBytes(ip);
  if (b === undefined) throw new InvalidConfigError(`invalid IPv4 address: ${ip}`);
  return b;
}

export const bytesToIp = (buf: Buffer, offset = 0): string => bytesToIpv4(buf, offset);

export function macToBytes(mac: string): Buffer {
  const parts = mac.split(/[:-]/);
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) throw new InvalidConfigError(`invalid MAC address: ${mac}`);
  return Buffer.from(parts.map((p) => parseInt(p, 16)));
}

export function bytesToMac(buf: Buffer, offset = 0): string {
  return [...buf.subarray(offset, offset + 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

export interface Cidr {
  addr: string;
  prefixlen: number;
}

/** Parses a.b.c.d/n (a bare address is /32); host bits are cleared. */
export function parseCidr(cidr: string): Cidr {
  const [ip, len, extra] = cidr.split('/');
  const prefixlen = len === undefined ? 32 : Number(len);
  if (extra !== undefined || ip === undefined || !Number.isInteger(prefixlen) || prefixlen < 0 || prefixlen > 32 || (len !== undefined && !/^\d+$/.test(len)))
    throw new InvalidConfigError(`invalid IPv4 CIDR: ${cidr}`);
  const value = ipToBytes(ip).readUInt32BE(0);
  const mask = prefixlen === 0 ? 0 : (0xffffffff << (32 - prefixlen)) >>> 0;
  const net = Buffer.alloc(4);
  net.writeUInt32BE((value & mask) >>> 0, 0);
  return { addr: bytesToIp(net), prefixlen };
}

// ---- vnet_endpoints ------------------------------------------------------

export interface EndpointValue {
  /** Host-side veth ifindex. */
  ifindex: number;
  podMac: string;
  /** MAC of the host-side veth. */
  hostMac: string;
  flags?: number;
}

export const encodeEndpointKey = ipToBytes;
export const decodeEndpointKey = (b: Buffer): string => bytesToIp(b);

export function encodeEndpoint(v: EndpointValue): Buffer {
  const b = Buffer.alloc(SIZES.endpoint);
  b.writeUInt32LE(v.ifindex, 0);
  b.writeUInt32LE(v.flags ?? 0, 4);
  macToBytes(v.podMac).copy(b, 8);
  macToBytes(v.hostMac).copy(b, 14);
  return b;
}

export function decodeEndpoint(b: Buffer): Required<EndpointValue> {
  return { ifindex: b.readUInt32LE(0), flags: b.readUInt32LE(4), podMac: bytesToMac(b, 8), hostMac: bytesToMac(b, 14) };
}

// ---- vnet_cidrs ------------------------------------------------------------

export function encodeLpmKey(cidr: string | Cidr): Buffer {
  const c = typeof cidr === 'string' ? parseCidr(cidr) : cidr;
  const b = Buffer.alloc(SIZES.lpmKey);
  b.writeUInt32LE(c.prefixlen, 0);
  ipToBytes(c.addr).copy(b, 4);
  return b;
}

export function decodeLpmKey(b: Buffer): string {
  return `${bytesToIp(b, 4)}/${b.readUInt32LE(0)}`;
}

export function encodeCidrInfo(flags: number): Buffer {
  const b = Buffer.alloc(SIZES.cidrInfo);
  b.writeUInt32LE(flags, 0);
  return b;
}

export const decodeCidrInfo = (b: Buffer): number => b.readUInt32LE(0);

// ---- vnet_config -----------------------------------------------------------

export interface ConfigValue {
  primaryIp: string;
  nicIfindex: number;
  nicMac: string;
  flags: number;
  natPortMin: number;
  natPortMax: number;
  ctlFlags: number;
  tcpTimeoutNs: bigint;
  udpTimeoutNs: bigint;
  icmpTimeoutNs: bigint;
  /** TCP pairs that saw FIN both ways (TIME_WAIT-like). */
  tcpFinTimeoutNs: bigint;
  /** TCP pairs that saw RST. */
  tcpRstTimeoutNs: bigint;
}

export function encodeU32Key(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n, 0);
  return b;
}

export function encodeConfig(c: ConfigValue): Buffer {
  const b = Buffer.alloc(SIZES.config);
  ipToBytes(c.primaryIp).copy(b, 0);
  b.writeUInt32LE(c.nicIfindex, 4);
  macToBytes(c.nicMac).copy(b, 8);
  b.writeUInt16LE(c.flags, 14);
  b.writeUInt16LE(c.natPortMin, 16);
  b.writeUInt16LE(c.natPortMax, 18);
  b.writeUInt32LE(c.ctlFlags, 20);
  b.writeBigUInt64LE(c.tcpTimeoutNs, 24);
  b.writeBigUInt64LE(c.udpTimeoutNs, 32);
  b.writeBigUInt64LE(c.icmpTimeoutNs, 40);
  b.writeBigUInt64LE(c.tcpFinTimeoutNs, 48);
  b.writeBigUInt64LE(c.tcpRstTimeoutNs, 56);
  return b;
}

export function decodeConfig(b: Buffer): ConfigValue {
  return {
    primaryIp: bytesToIp(b, 0),
    nicIfindex: b.readUInt32LE(4),
    nicMac: bytesToMac(b, 8),
    flags: b.readUInt16LE(14),
    natPortMin: b.readUInt16LE(16),
    natPortMax: b.readUInt16LE(18),
    ctlFlags: b.readUInt32LE(20),
    tcpTimeoutNs: b.readBigUInt64LE(24),
    udpTimeoutNs: b.readBigUInt64LE(32),
    icmpTimeoutNs: b.readBigUInt64LE(40),
    tcpFinTimeoutNs: b.readBigUInt64LE(48),
    tcpRstTimeoutNs: b.readBigUInt64LE(56),
  };
}

// ---- NAT and inbound flows -------------------------------------------------

/** Egress orientation: s = pod side (or the NAT address in reverse keys), d = remote. ICMP: sport = echo id, dport = 0. */
export interface NatTuple {
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  proto: number;
}

export function encodeNatTuple(t: NatTuple): Buffer {
  const b = Buffer.alloc(SIZES.natTuple);
  ipToBytes(t.saddr).copy(b, 0);
  ipToBytes(t.daddr).copy(b, 4);
  b.writeUInt16BE(t.sport, 8);
  b.writeUInt16BE(t.dport, 10);
  b.writeUInt8(t.proto, 12);
  return b;
}

export function decodeNatTuple(b: Buffer): NatTuple {
  return { saddr: bytesToIp(b, 0), daddr: bytesToIp(b, 4), sport: b.readUInt16BE(8), dport: b.readUInt16BE(10), proto: b.readUInt8(12) };
}

/** Forward: the translated source; reverse: the original pod source. */
export interface NatEntryValue {
  addr: string;
  port: number;
  lastSeenNs: bigint;
  /** NAT_F bits (TCP); 0 if absent. */
  flags?: number;
}

export function encodeNatEntry(e: NatEntryValue): Buffer {
  const b = Buffer.alloc(SIZES.natEntry);
  ipToBytes(e.addr).copy(b, 0);
  b.writeUInt16BE(e.port, 4);
  b.writeUInt16LE(e.flags ?? 0, 6);
  b.writeBigUInt64LE(e.lastSeenNs, 8);
  return b;
}

export function decodeNatEntry(b: Buffer): Required<NatEntryValue> {
  return { addr: bytesToIp(b, 0), port: b.readUInt16BE(4), flags: b.readUInt16LE(6), lastSeenNs: b.readBigUInt64LE(8) };
}

export const decodeFlowEntry = (b: Buffer): bigint => b.readBigUInt64LE(0);

/** Sum of a per-CPU u64 value (one 8-byte slot per possible CPU). */
export function sumPerCpuU64(b: Buffer): bigint {
  let sum = 0n;
  for (let off = 0; off + 8 <= b.length; off += 8) sum += b.readBigUInt64LE(off);
  return sum;
}

// ---- NetworkPolicy maps ------------------------------------------------------

/** Address family numbers as in the keys (AF_INET). */
export const AF = { ipv4: 2 } as const;
/** Direction of a check, seen from the local endpoint (VNET_POL_DIR_*). */
export const POL_DIR = { ingress: 0, egress: 1 } as const;
/** vnet_pol_ep.flags */
export const POL_F = { INGRESS_ISOLATED: 1, EGRESS_ISOLATED: 2 } as const;
/** vnet_pol_match.flags */
export const POL_M = { ANY_PORT: 1 } as const;
/** LPM prefix bits before the address / port in the policy tries: {id, family + pad} and {id, set, proto + pad}. */
export const POL_CIDR_PREFIX_BASE = 64;
export const POL_PORT_PREFIX_BASE = 64;

/** key {family, dir, pad, addr[16]}: dir 0 in vnet_pol_eps, the direction in vnet_pol_drops. */
export function encodePolEpKey(ip: string, dir = 0): Buffer {
  const b = Buffer.alloc(SIZES.polEpKey);
  b.writeUInt8(AF.ipv4, 0);
  b.writeUInt8(dir, 1);
  ipToBytes(ip).copy(b, 4);
  return b;
}

export function decodePolEpKey(b: Buffer): { family: number; dir: number; ip: string } {
  return { family: b.readUInt8(0), dir: b.readUInt8(1), ip: bytesToIp(b, 4) };
}

export interface PolEpValue {
  ingressId: number;
  egressId: number;
  flags: number;
}

export function encodePolEp(v: PolEpValue): Buffer {
  const b = Buffer.alloc(SIZES.polEp);
  b.writeUInt32LE(v.ingressId, 0);
  b.writeUInt32LE(v.egressId, 4);
  b.writeUInt32LE(v.flags, 8);
  return b;
}

export function decodePolEp(b: Buffer): PolEpValue {
  return { ingressId: b.readUInt32LE(0), egressId: b.readUInt32LE(4), flags: b.readUInt32LE(8) };
}

/** Policy ids are stored in host order (they are never on the wire). */
export const encodePolIdKey = encodeU32Key;
export const decodePolIdKey = (b: Buffer): number => b.readUInt32LE(0);

export function encodePolIdVal(digest: Buffer): Buffer {
  const b = Buffer.alloc(SIZES.polIdVal);
  digest.copy(b, 0, 0, SIZES.polIdVal);
  return b;
}

/** vnet_pol_cidrs key: prefixlen = 64 + the CIDR's length. */
export function encodePolCidrKey(id: number, cidr: Cidr): Buffer {
  const b = Buffer.alloc(SIZES.polCidrKey);
  b.writeUInt32LE(POL_CIDR_PREFIX_BASE + cidr.prefixlen, 0);
  b.writeUInt32LE(id, 4);
  b.writeUInt8(AF.ipv4, 8);
  ipToBytes(cidr.addr).copy(b, 12);
  return b;
}

export function decodePolCidrKey(b: Buffer): { id: number; family: number; cidr: string } {
  return { id: b.readUInt32LE(4), family: b.readUInt8(8), cidr: `${bytesToIp(b, 12)}/${b.readUInt32LE(0) - POL_CIDR_PREFIX_BASE}` };
}

export interface PolMatch {
  set: number;
  flags: number;
}

export function encodePolMatch(m: PolMatch): Buffer {
  const b = Buffer.alloc(SIZES.polMatch);
  b.writeUInt16LE(m.set, 0);
  b.writeUInt16LE(m.flags, 2);
  return b;
}

export function decodePolMatch(b: Buffer): PolMatch {
  return { set: b.readUInt16LE(0), flags: b.readUInt16LE(2) };
}

/** vnet_pol_ports key: port (network order) with prefixlen = 64 + its prefix bits. */
export interface PolPortKey {
  id: number;
  set: number;
  proto: number;
  port: number;
  /** 0..16 bits of the port. */
  bits: number;
}

export function encodePolPortKey(k: PolPortKey): Buffer {
  const b = Buffer.alloc(SIZES.polPortKey);
  b.writeUInt32LE(POL_PORT_PREFIX_BASE + k.bits, 0);
  b.writeUInt32LE(k.id, 4);
  b.writeUInt16LE(k.set, 8);
  b.writeUInt8(k.proto, 10);
  b.writeUInt16BE(k.port, 12);
  return b;
}

export function decodePolPortKey(b: Buffer): PolPortKey {
  return { id: b.readUInt32LE(4), set: b.readUInt16LE(8), proto: b.readUInt8(10), port: b.readUInt16BE(12), bits: b.readUInt32LE(0) - POL_PORT_PREFIX_BASE };
}

export function encodePolPortVal(): Buffer {
  const b = Buffer.alloc(SIZES.polPortVal);
  b.writeUInt32LE(1, 0);
  return b;
}

/** vnet_pol_flow_key.kind (VNET_POL_FLOW_*): a connection, or a fragmented datagram (lport = its IP id). */
export const POL_FLOW = { conn: 0, frag: 1 } as const;

/** vnet_pol_flows key, from the local endpoint's side. */
export interface PolFlowKey {
  local: string;
  remote: string;
  lport: number;
  rport: number;
  proto: number;
  /** POL_FLOW; default conn */
  kind?: number;
}

export function encodePolFlowKey(k: PolFlowKey): Buffer {
  const b = Buffer.alloc(SIZES.polFlowKey);
  ipToBytes(k.local).copy(b, 0);
  ipToBytes(k.remote).copy(b, 16);
  b.writeUInt16BE(k.lport, 32);
  b.writeUInt16BE(k.rport, 34);
  b.writeUInt8(k.proto, 36);
  b.writeUInt8(AF.ipv4, 37);
  b.writeUInt8(k.kind ?? POL_FLOW.conn, 38);
  return b;
}

export function decodePolFlowKey(b: Buffer): Required<PolFlowKey> & { family: number } {
  return { local: bytesToIp(b, 0), remote: bytesToIp(b, 16), lport: b.readUInt16BE(32), rport: b.readUInt16BE(34), proto: b.readUInt8(36), family: b.readUInt8(37), kind: b.readUInt8(38) };
}
