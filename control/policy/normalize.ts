// Normal form of one direction's rules, so that equal policies compile to
// equal (deep-equal, JSON-equal) results and the dataplanes get few entries:
// port ranges merged per protocol; rules with the same ports merged (union of
// peers) and rules with the same peers merged (union of ports) until neither
// merges anything; peers covered by a broader peer dropped; everything sorted.
import { cidrContains, cidrOverlaps, compareCidr4, formatCidr4, parseCidr4, type Cidr4 } from './cidr.js';
import type { CompiledRule, L4Protocol, PeerCidr, PortRange } from './types.js';

/** A rule before normalization: peers as parsed CIDRs. */
export interface RuleAtom {
  peers: InternalPeer[] | null;
  ports: PortRange[] | null;
  sources: string[];
}
export interface InternalPeer {
  cidr: Cidr4;
  except: Cidr4[];
  /** Cached text form (peers are shared: one object per pod address). */
  key?: string;
}

const PROTO_ORDER: Record<L4Protocol, number> = { TCP: 0, UDP: 1, SCTP: 2 };

/** Sort and merge overlapping or adjacent ranges of the same protocol. */
export function normalizePorts(ports: PortRange[]): PortRange[] {
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
export function normalizePeers(peers: InternalPeer[]): InternalPeer[] {
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
      const peers = g.some((r) => r.peers === null) ? null : normalizePeers(g.flatMap((r) => r.peers!));
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
  if (!n) normalizedPeers.set(peers, (n = normalizePeers(peers)));
  return n;
}

/** Normalize one direction's atoms into compiled rules. */
export function normalizeRules(atoms: RuleAtom[]): CompiledRule[] {
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

/** For tests and debug views: parse a compiled PeerCidr back. */
export function peerFromCidr(p: PeerCidr): InternalPeer {
  return { cidr: parseCidr4(p.cidr)!, except: p.except.map((e) => parseCidr4(e)!) };
}
