// The policy compiler's hot paths as they were before they were made faster
// (normalize.ts normalizePeers/normalizeRules and the ebpf compileDirection,
// from commit a222cd2), kept only so that test/unit/policy-fast-paths.test.ts
// can check the current ones give the same bytes on random inputs. Not used
// by anything shipped.
import { createHash } from 'node:crypto';
import { InvalidConfigError } from '../../control/errors.js';
import { PROTO_NUM, type CidrEntry, type CompiledDirection, type PortEntry } from '../../control/dataplane/ebpf/policy.js';
import { POL_M, parseCidr, ipToBytes, type Cidr, type PolMatch } from '../../control/dataplane/ebpf/layouts.js';
import { cidrContains, cidrOverlaps, compareCidr4, formatCidr4, type Cidr4 } from '../../control/policy/cidr.js';
import type { RuleAtom } from '../../control/policy/normalize.js';
import type { CompiledRule, DirectionPolicy, L4Protocol, PeerCidr, PortRange } from '../../control/policy/types.js';

interface InternalPeer {
  cidr: Cidr4;
  except: Cidr4[];
  key?: string;
}

const PROTO_ORDER: Record<L4Protocol, number> = { TCP: 0, UDP: 1, SCTP: 2 };

/** Sort and merge overlapping or adjacent ranges of the same protocol. */
function normalizePorts(ports: PortRange[]): PortRange[] {
  const sorted = [...ports].sort((a, b) => PROTO_ORDER[a.protocol] - PROTO_ORDER[b.protocol] || a.port - b.port || a.endPort - b.endPort);
  const out: PortRange[] = [];
  for (const p of sorted) {
    const last = out[out.length - 1];
    if (last && last.protocol === p.protocol && p.port <= last.endPort + 1) {
      last.endPort = Math.max(last.endPort, p.endPort);
    } else {
      out.push({ protocol: p.protocol, port: p.port, endPort: p.endPort });
    }
  }
  return out;
}

function normalizePeer(p: InternalPeer): InternalPeer {
  if (p.except.length === 0) return p;
  // Drop excepts inside another except; sort.
  const ex = [...p.except].sort(compareCidr4);
  const kept: Cidr4[] = [];
  for (const e of ex) if (!kept.some((k) => cidrContains(k, e))) kept.push(e);
  return { cidr: p.cidr, except: kept };
}

// Peers are shared between rules and endpoints (one object per pod address):
// their text forms are computed once.
const compiledPeers = new WeakMap<InternalPeer, PeerCidr>();

function peerKey(p: InternalPeer): string {
  return (p.key ??= p.except.length === 0 ? formatCidr4(p.cidr) : `${formatCidr4(p.cidr)}-${p.except.map(formatCidr4).join(',')}`);
}

function comparePeer(a: InternalPeer, b: InternalPeer): number {
  const c = compareCidr4(a.cidr, b.cidr);
  if (c !== 0) return c;
  const n = Math.min(a.except.length, b.except.length);
  for (let i = 0; i < n; i++) {
    const d = compareCidr4(a.except[i]!, b.except[i]!);
    if (d !== 0) return d;
  }
  return a.except.length - b.except.length;
}

/** q ⊇ p (sufficient test; CIDRs are nested or disjoint). */
function peerCovers(q: InternalPeer, p: InternalPeer): boolean {
  if (!cidrContains(q.cidr, p.cidr)) return false;
  return q.except.every((e) => !cidrOverlaps(e, p.cidr) || p.except.some((pe) => cidrContains(pe, e)));
}

function isEmptyPeer(p: InternalPeer): boolean {
  return p.except.some((e) => cidrContains(e, p.cidr));
}

/** Dedupe, drop covered and empty peers, sort. Linear in the common case (many /32s, few blocks). */
export function normalizePeersV1(peers: InternalPeer[]): InternalPeer[] {
  const byKey = new Map<string, InternalPeer>();
  for (const raw of new Set(peers)) {
    const p = normalizePeer(raw);
    if (!isEmptyPeer(p)) byKey.set(peerKey(p), p);
  }
  const all = [...byKey.values()];
  // Plain blocks (no except) by prefix length: a peer is covered if a strictly
  // shorter plain block contains its network.
  const plain = new Map<number, Set<number>>();
  const withExcept: InternalPeer[] = [];
  for (const p of all) {
    if (p.except.length === 0) {
      let s = plain.get(p.cidr.prefix);
      if (!s) plain.set(p.cidr.prefix, (s = new Set()));
      s.add(p.cidr.base);
    } else {
      withExcept.push(p);
    }
  }
  const prefixes = [...plain.keys()];
  const kept = all.filter((p) => {
    for (const len of prefixes) {
      if (len > p.cidr.prefix || (len === p.cidr.prefix && p.except.length === 0)) continue;
      const base = len === 0 ? 0 : (p.cidr.base & ((0xffffffff << (32 - len)) >>> 0)) >>> 0;
      if (plain.get(len)!.has(base)) return false;
    }
    return !withExcept.some((q) => q !== p && peerCovers(q, p) && !(peerCovers(p, q) && comparePeer(p, q) < 0));
  });
  return kept.sort(comparePeer);
}

function portsKey(ports: PortRange[] | null): string {
  return ports === null ? '*' : ports.map((p) => `${p.protocol}:${p.port}-${p.endPort}`).join(',');
}

function peersKey(peers: InternalPeer[] | null): string {
  return peers === null ? '*' : peers.map(peerKey).join(',');
}

function toPeerCidr(p: InternalPeer): PeerCidr {
  let c = compiledPeers.get(p);
  if (!c) compiledPeers.set(p, (c = { family: 'ipv4', cidr: formatCidr4(p.cidr), except: p.except.map(formatCidr4) }));
  return c;
}

interface Work {
  peers: InternalPeer[] | null;
  ports: PortRange[] | null;
  sources: Set<string>;
}

/**
 * Merge rules with the same key: the other half (peers or ports) is unioned,
 * collected first and normalized once per group (merging pairwise would be
 * quadratic in a rule's peers: thousands of pod /32s are common).
 */
function mergeBy(rules: Work[], key: (w: Work) => string, half: 'peers' | 'ports'): Work[] {
  const groups = new Map<string, Work[]>();
  for (const r of rules) {
    const k = key(r);
    const g = groups.get(k);
    if (g) g.push(r);
    else groups.set(k, [r]);
  }
  const out: Work[] = [];
  for (const g of groups.values()) {
    if (g.length === 1) {
      out.push(g[0]!);
      continue;
    }
    const sources = new Set(g.flatMap((r) => [...r.sources]));
    if (half === 'peers') {
      const peers = g.some((r) => r.peers === null) ? null : normalizePeersV1(g.flatMap((r) => r.peers!));
      out.push({ peers, ports: g[0]!.ports, sources });
    } else {
      const ports = g.some((r) => r.ports === null) ? null : normalizePorts(g.flatMap((r) => r.ports!));
      out.push({ peers: g[0]!.peers, ports, sources });
    }
  }
  return out;
}

// A rule's peer list is shared by every direction made with it (the compiler
// keeps it until the cluster moves under its selectors): normalized once.
const normalizedPeers = new WeakMap<InternalPeer[], InternalPeer[]>();
function normalizePeersOnce(peers: InternalPeer[]): InternalPeer[] {
  let n = normalizedPeers.get(peers);
  if (!n) normalizedPeers.set(peers, (n = normalizePeersV1(peers)));
  return n;
}

/** Normalize one direction's atoms into compiled rules. */
export function normalizeRulesV1(atoms: RuleAtom[]): CompiledRule[] {
  let rules: Work[] = [];
  for (const a of atoms) {
    if (a.peers !== null && a.peers.length === 0) continue;
    if (a.ports !== null && a.ports.length === 0) continue;
    rules.push({
      peers: a.peers === null ? null : normalizePeersOnce(a.peers),
      ports: a.ports === null ? null : normalizePorts(a.ports),
      sources: new Set(a.sources),
    });
  }
  // Anything from anywhere: that one rule says it all.
  const open = rules.filter((r) => r.peers === null && r.ports === null);
  if (open.length > 0) {
    rules = [{ peers: null, ports: null, sources: new Set(open.flatMap((r) => [...r.sources])) }];
  }
  for (let before = Infinity; rules.length < before; ) {
    before = rules.length;
    rules = mergeBy(rules, (r) => portsKey(r.ports), 'peers');
    rules = mergeBy(rules, (r) => peersKey(r.peers), 'ports');
  }
  return rules
    .map((r) => ({ key: `${portsKey(r.ports)}|${peersKey(r.peers)}`, r }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    .map(({ r }) => ({
      peers: r.peers === null ? null : r.peers.map(toPeerCidr),
      ports: r.ports,
      sources: [...r.sources].sort(),
    }));
}


// ---- control/dataplane/ebpf/policy.ts ----

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
  let c: Cidr;
  try {
    c = parseCidr(cidr);
  } catch {
    throw new InvalidConfigError(`policy ${what} ${JSON.stringify(cidr)} is not an IPv4 CIDR`);
  }
  return { net: ipToBytes(c.addr).readUInt32BE(0), len: c.prefixlen };
}

function toCidr(p: Prefix): Cidr {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(p.net, 0);
  return { addr: `${b[0]}.${b[1]}.${b[2]}.${b[3]}`, prefixlen: p.len };
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
function rangePrefixes(lo: number, hi: number): Array<{ port: number; bits: number }> {
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

/** The entries for one isolated direction. Throws InvalidConfigError (and nothing is written) on a bad rule. */
export function compileDirectionV1(dir: DirectionPolicy): CompiledDirection {
  const anyPeerRules: number[] = [];
  // cidr key -> the rules it belongs to, each with that peer's excepts.
  const byCidr = new Map<number, Array<{ rule: number; excepts: Prefix[] }>>();
  const regions = new Map<number, Prefix>();
  dir.rules.forEach((rule, i) => {
    for (const r of rule.ports ?? []) checkRange(r);
    if (rule.peers === null) {
      anyPeerRules.push(i);
      return;
    }
    for (const peer of rule.peers) {
      if (peer.family !== 'ipv4') throw new InvalidConfigError(`policy peer family ${JSON.stringify(peer.family)} is not supported (IPv4 only)`);
      const c = prefixOf(peer.cidr, 'peer');
      const excepts = peer.except.map((e) => prefixOf(e, 'except'));
      regions.set(keyOf(c), c);
      for (const e of excepts) regions.set(keyOf(e), e);
      const list = byCidr.get(keyOf(c)) ?? [];
      list.push({ rule: i, excepts });
      byCidr.set(keyOf(c), list);
    }
  });
  if (anyPeerRules.length) regions.set(0, { net: 0, len: 0 });

  const sets = new Map<string, number>(); // canonical union -> set index (1-based)
  const setRanges = new Map<number, Map<number, Array<[number, number]>>>();
  const valueOf = (p: Prefix): string => {
    const rules = new Set(anyPeerRules);
    for (let len = p.len; len >= 0; len--) {
      for (const { rule, excepts } of byCidr.get(ancestorKey(p, len)) ?? []) if (!excepts.some((e) => contains(e, p))) rules.add(rule);
    }
    if (rules.size === 0) return 'none';
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
  const ordered = [...regions.values()].sort((a, b) => a.len - b.len || a.net - b.net);
  const values = new Map<number, string>();
  const cidrs: CidrEntry[] = [];
  for (const p of ordered) {
    const v = valueOf(p);
    values.set(keyOf(p), v);
    let inherited = 'none';
    for (let len = p.len - 1; len >= 0; len--) {
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

