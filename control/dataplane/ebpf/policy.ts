// Compiles one direction of an EndpointPolicy into the entries of the two
// policy LPM tries the programs read (bpf/lib/policy.h):
//
//   vnet_pol_cidrs {id, family, prefix} -> {port set, ANY_PORT}
//   vnet_pol_ports {id, set, proto, port prefix} -> allow
//
// The trie answers "which ports may this peer use": for the longest entry P
// containing a peer address, the union of the ports of every rule whose peer
// set contains P. Every cidr and every except of every rule is an entry, so an
// address's longest entry decides exactly (prefixes are nested or disjoint):
// a rule's cidr contains the address iff it contains P, and so does an except.
// The result is exact for any number of rules (no bitmask width), and identical
// unions share one port set. Pure: no maps, no I/O (unit-testable).
import { createHash } from 'node:crypto';
import { InvalidConfigError } from '../../errors.js';
import type { DirectionPolicy, L4Protocol, PortRange } from '../../policy/types.js';
import { POL_M, parseCidr, ipToBytes, type Cidr, type PolMatch } from './layouts.js';

export const PROTO_NUM: Record<L4Protocol, number> = { TCP: 6, UDP: 17, SCTP: 132 };

export interface CidrEntry {
  cidr: Cidr;
  match: PolMatch;
}

export interface PortEntry {
  set: number;
  proto: number;
  port: number;
  bits: number;
}

export interface CompiledDirection {
  /** 16 bytes over the entries: endpoints whose directions compile alike share one policy id. */
  digest: Buffer;
  cidrs: CidrEntry[];
  ports: PortEntry[];
}

interface Prefix {
  net: number;
  len: number;
}

const mask = (len: number): number => (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0);
/** A prefix as one number (len * 2^32 + net): map keys without building strings (1,000-rule policies compile in ms). */
const keyOf = (p: Prefix): number => p.len * 0x100000000 + p.net;
const ancestorKey = (p: Prefix, len: number): number => len * 0x100000000 + ((p.net & mask(len)) >>> 0);
const contains = (outer: Prefix, inner: Prefix): boolean => outer.len <= inner.len && ((inner.net & mask(outer.len)) >>> 0) === outer.net;

function prefixOf(cidr: string, what: string): Prefix {
  const fast = canonicalPrefix(cidr);
  if (fast) return fast;
  let c: Cidr;
  try {
    c = parseCidr(cidr);
  } catch {
    throw new InvalidConfigError(`policy ${what} ${JSON.stringify(cidr)} is not an IPv4 CIDR`);
  }
  return { net: ipToBytes(c.addr).readUInt32BE(0), len: c.prefixlen };
}

/**
 * "a.b.c.d/n" in the compiler's canonical form (no leading zeros), parsed
 * without building strings or Buffers: a 1,000-peer direction parses 1,000 of
 * them. Anything else (undefined) goes through parseCidr and its errors.
 */
function canonicalPrefix(text: string): Prefix | undefined {
  let ip = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  let i = 0;
  for (; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch >= 48 && ch <= 57) {
      if (digits > 0 && octet === 0) return undefined;
      octet = octet * 10 + (ch - 48);
      if (++digits > 3 || octet > 255) return undefined;
    } else if (digits > 0 && ch === 46 && dots < 3) {
      ip = ip * 256 + octet;
      octet = digits = 0;
      dots++;
    } else if (digits > 0 && ch === 47 && dots === 3) {
      break;
    } else {
      return undefined;
    }
  }
  if (i === text.length) return undefined;
  ip = ip * 256 + octet;
  let len = 0;
  digits = 0;
  for (i++; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch < 48 || ch > 57 || (digits > 0 && len === 0)) return undefined;
    len = len * 10 + (ch - 48);
    if (++digits > 2 || len > 32) return undefined;
  }
  if (digits === 0) return undefined;
  return { net: (ip & mask(len)) >>> 0, len };
}

function toCidr(p: Prefix): Cidr {
  return { addr: `${p.net >>> 24}.${(p.net >>> 16) & 255}.${(p.net >>> 8) & 255}.${p.net & 255}`, prefixlen: p.len };
}

function checkRange(r: PortRange): void {
  if (!(r.protocol in PROTO_NUM)) throw new InvalidConfigError(`policy port protocol ${JSON.stringify(r.protocol)} is not TCP, UDP or SCTP`);
  const ok = (n: number): boolean => Number.isInteger(n) && n >= 1 && n <= 65535;
  if (!ok(r.port) || !ok(r.endPort) || r.endPort < r.port) throw new InvalidConfigError(`policy port range ${r.port}-${r.endPort} is not within 1-65535 with port <= endPort`);
}

/** Union of port ranges, merged per protocol: "6:80-80,443-443;17:53-53" (canonical, so equal unions compare equal). */
function portUnion(ranges: PortRange[]): Map<number, Array<[number, number]>> {
  const byProto = new Map<number, Array<[number, number]>>();
  for (const r of ranges) {
    const proto = PROTO_NUM[r.protocol];
    const list = byProto.get(proto) ?? [];
    list.push([r.port, r.endPort]);
    byProto.set(proto, list);
  }
  const out = new Map<number, Array<[number, number]>>();
  for (const proto of [...byProto.keys()].sort((a, b) => a - b)) {
    const sorted = byProto.get(proto)!.sort((a, b) => a[0] - b[0]);
    const merged: Array<[number, number]> = [];
    for (const [lo, hi] of sorted) {
      const last = merged[merged.length - 1];
      if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
      else merged.push([lo, hi]);
    }
    out.set(proto, merged);
  }
  return out;
}

/** An inclusive port range as LPM prefixes over the 16-bit port. */
export function rangePrefixes(lo: number, hi: number): Array<{ port: number; bits: number }> {
  const out: Array<{ port: number; bits: number }> = [];
  let p = lo;
  while (p <= hi) {
    let size = 1;
    while (size < 65536 && p % (size * 2) === 0 && p + size * 2 - 1 <= hi) size *= 2;
    out.push({ port: p, bits: 16 - Math.log2(size) });
    p += size;
  }
  return out;
}

const NO_EXCEPTS: Prefix[] = [];

/** The entries for one isolated direction. Throws InvalidConfigError (and nothing is written) on a bad rule. */
export function compileDirection(dir: DirectionPolicy): CompiledDirection {
  const anyPeerRules: number[] = [];
  // cidr key -> the rules it belongs to, each with that peer's excepts.
  const byCidr = new Map<number, Array<{ rule: number; excepts: Prefix[] }>>();
  const regions: Prefix[] = [];
  dir.rules.forEach((rule, i) => {
    for (const r of rule.ports ?? []) checkRange(r);
    if (rule.peers === null) {
      anyPeerRules.push(i);
      return;
    }
    for (const peer of rule.peers) {
      if (peer.family !== 'ipv4') throw new InvalidConfigError(`policy peer family ${JSON.stringify(peer.family)} is not supported (IPv4 only)`);
      const c = prefixOf(peer.cidr, 'peer');
      const excepts = peer.except.length === 0 ? NO_EXCEPTS : peer.except.map((e) => prefixOf(e, 'except'));
      const k = keyOf(c);
      regions.push(c);
      for (const e of excepts) regions.push(e);
      const list = byCidr.get(k);
      if (list) list.push({ rule: i, excepts });
      else byCidr.set(k, [{ rule: i, excepts }]);
    }
  });
  if (anyPeerRules.length) regions.push({ net: 0, len: 0 });

  const sets = new Map<string, number>(); // canonical union -> set index (1-based)
  const setRanges = new Map<number, Map<number, Array<[number, number]>>>();
  // Only the prefix lengths some rule's cidr has can hold a containing cidr (longest first).
  const cidrLens = [...new Set([...byCidr.keys()].map((k) => Math.floor(k / 0x100000000)))].sort((a, b) => b - a);
  // The value depends only on the rules that apply, and most peers (pod /32s)
  // share a few such sets: the port union is computed once per set.
  const byRules = new Map<string, string>();
  const valueOf = (p: Prefix): string => {
    const rules = [...anyPeerRules];
    for (const len of cidrLens) {
      if (len > p.len) continue;
      const list = byCidr.get(ancestorKey(p, len));
      if (list === undefined) continue;
      for (const { rule, excepts } of list) if (!rules.includes(rule) && !excepts.some((e) => contains(e, p))) rules.push(rule);
    }
    if (rules.length === 0) return 'none';
    const key = rules.join(',');
    let v = byRules.get(key);
    if (v === undefined) byRules.set(key, (v = unionValue(rules)));
    return v;
  };
  const unionValue = (rules: number[]): string => {
    const ranges: PortRange[] = [];
    for (const i of rules) {
      const ports = dir.rules[i]!.ports;
      if (ports === null) return 'any';
      ranges.push(...ports);
    }
    const union = portUnion(ranges);
    if (union.size === 0) return 'none'; // `ports: []`: the rule admits nothing
    const canon = [...union].map(([proto, rs]) => `${proto}:${rs.map(([a, b]) => `${a}-${b}`).join(',')}`).join(';');
    if (!sets.has(canon)) {
      const index = sets.size + 1;
      if (index > 0xffff) throw new InvalidConfigError('policy has more than 65535 distinct port sets');
      sets.set(canon, index);
      setRanges.set(index, union);
    }
    return `set:${sets.get(canon)}`;
  };

  // Shortest first, so each prefix's nearest containing region is known: an entry
  // equal to it changes nothing and is left out.
  const ordered = regions.sort((a, b) => a.len - b.len || a.net - b.net).filter((p, i, l) => i === 0 || p.len !== l[i - 1]!.len || p.net !== l[i - 1]!.net);
  const regionLens = [...new Set(ordered.map((p) => p.len))].sort((a, b) => b - a);
  const values = new Map<number, string>();
  const cidrs: CidrEntry[] = [];
  for (const p of ordered) {
    const v = valueOf(p);
    values.set(keyOf(p), v);
    let inherited = 'none';
    for (const len of regionLens) {
      if (len >= p.len) continue;
      const parent = values.get(ancestorKey(p, len));
      if (parent !== undefined) {
        inherited = parent;
        break;
      }
    }
    if (v === inherited) continue;
    const match: PolMatch = v === 'any' ? { set: 0, flags: POL_M.ANY_PORT } : v === 'none' ? { set: 0, flags: 0 } : { set: Number(v.slice(4)), flags: 0 };
    cidrs.push({ cidr: toCidr(p), match });
  }
  const ports: PortEntry[] = [];
  for (const [set, union] of setRanges) {
    for (const [proto, ranges] of union) for (const [lo, hi] of ranges) for (const pp of rangePrefixes(lo, hi)) ports.push({ set, proto, ...pp });
  }
  const canon = JSON.stringify({ c: cidrs.map((e) => [e.cidr.addr, e.cidr.prefixlen, e.match.set, e.match.flags]), p: ports.map((e) => [e.set, e.proto, e.port, e.bits]) });
  const digest = createHash('sha256').update(canon).digest().subarray(0, 16);
  return { digest, cidrs, ports };
}

/**
 * The reference semantics, straight from the compiled form: does `dir` admit a
 * new flow with this peer address, protocol and destination port (null = the
 * packet carries no port)? Used by tests and the differential model.
 */
export function directionAllows(dir: DirectionPolicy, peer: string, proto: number, port: number | null): boolean {
  if (!dir.isolated) return true;
  const addr = ipToBytes(peer).readUInt32BE(0);
  const inCidr = (c: string): boolean => {
    const p = prefixOf(c, 'peer');
    return ((addr & mask(p.len)) >>> 0) === p.net;
  };
  return dir.rules.some((rule) => {
    const peerOk = rule.peers === null || rule.peers.some((pc) => inCidr(pc.cidr) && !pc.except.some(inCidr));
    if (!peerOk) return false;
    if (rule.ports === null) return true;
    return port !== null && rule.ports.some((r) => PROTO_NUM[r.protocol] === proto && port >= r.port && port <= r.endPort);
  });
}
