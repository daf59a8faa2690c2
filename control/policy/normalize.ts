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
  /** Cached sort key of the CIDR (see comparePeer). */
  order?: number;
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

/** Base, then prefix, then excepts: one number per CIDR, cached on shared peers. */
function orderOf(p: InternalPeer): number {
  return (p.order ??= p.cidr.base * 64 + p.cidr.prefix);
}

/** Every peer compared was given its order by orderOf first. */
function comparePeer(a: InternalPeer, b: InternalPeer): number {
  const c = a.order! - b.order!;
  if (c !== 0 || (a.except.length === 0 && b.except.length === 0)) return c;
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

/**
 * Dedupe, drop covered and empty peers, sort. Sorting first makes the rest one
 * pass: duplicates are neighbours, and a plain block is followed by the peers
 * inside it. Inputs are mostly concatenations of sorted lists (rules merged),
 * which the sort merges as runs; nothing is keyed by text.
 */
export function normalizePeers(peers: InternalPeer[]): InternalPeer[] {
  const all: InternalPeer[] = [];
  let withExcept: InternalPeer[] | undefined;
  for (const raw of peers) {
    const p = normalizePeer(raw);
    orderOf(p);
    if (p.except.length === 0) {
      all.push(p);
    } else if (!isEmptyPeer(p)) {
      all.push(p);
      (withExcept ??= []).push(p);
    }
  }
  all.sort(comparePeer);
  if (withExcept) withExcept = withExcept.sort(comparePeer).filter((p, i, l) => i === 0 || comparePeer(l[i - 1]!, p) !== 0);
  // One pass over the sorted peers: duplicates are neighbours. `cover`: the
  // last plain block not inside an earlier one. A plain block covering a peer
  // comes before it, and everything between them lies inside it, so it is
  // the cover when the peer comes.
  const out: InternalPeer[] = [];
  let prev: InternalPeer | undefined;
  let cover: InternalPeer | undefined;
  for (const p of all) {
    if (prev !== undefined && (prev === p || comparePeer(prev, p) === 0)) continue;
    prev = p;
    if (cover !== undefined && cidrContains(cover.cidr, p.cidr)) continue;
    if (p.except.length === 0) cover = p;
    if (withExcept && withExcept.some((q) => comparePeer(q, p) !== 0 && peerCovers(q, p) && !(peerCovers(p, q) && comparePeer(p, q) < 0))) continue;
    out.push(p);
  }
  return out;
}

function portsKey(ports: PortRange[] | null): string {
  return ports === null ? '*' : ports.map((p) => `${p.protocol}:${p.port}-${p.endPort}`).join(',');
}

function peersKey(peers: InternalPeer[] | null): string {
  return peers === null ? '*' : peers.map(peerKey).join(',');
}

// Rules' peer lists are shared by every direction made with them: hashed once.
const listHashes = new WeakMap<InternalPeer[], number>();
function peerListHash(peers: InternalPeer[]): number {
  let h = listHashes.get(peers);
  if (h === undefined) {
    h = peers.length;
    for (const p of peers) {
      h = Math.imul(h ^ p.cidr.base, 0x9e3779b1) ^ p.cidr.prefix;
      for (const e of p.except) h = Math.imul(h ^ e.base, 0x85ebca6b) ^ e.prefix;
    }
    listHashes.set(peers, h);
  }
  return h;
}

function samePeer(a: InternalPeer, b: InternalPeer): boolean {
  if (a === b) return true;
  if (a.cidr.base !== b.cidr.base || a.cidr.prefix !== b.cidr.prefix || a.except.length !== b.except.length) return false;
  return a.except.every((e, i) => e.base === b.except[i]!.base && e.prefix === b.except[i]!.prefix);
}

/**
 * Equal peer lists (the same peers in the same order) told apart from the
 * rest without building text: bucketed by a hash, compared peer by peer.
 * Many policies name the same pods: their lists are found equal here.
 */
export class PeerLists {
  private readonly buckets = new Map<number, InternalPeer[][]>();

  /** The first list given that equals this one (this one, if none did). */
  intern(peers: InternalPeer[]): InternalPeer[] {
    const h = peerListHash(peers);
    let bucket = this.buckets.get(h);
    if (!bucket) this.buckets.set(h, (bucket = []));
    const found = bucket.find((b) => b === peers || (b.length === peers.length && b.every((q, k) => samePeer(q, peers[k]!))));
    if (found) return found;
    bucket.push(peers);
    return peers;
  }

  clear(): void {
    this.buckets.clear();
  }
}

/** Names equal peer lists alike within one normalizeRules call. */
function peerListNamer(): (peers: InternalPeer[] | null) => string {
  const lists = new PeerLists();
  const names = new Map<InternalPeer[], string>();
  return (peers) => {
    if (peers === null) return '*';
    const canon = lists.intern(peers);
    let name = names.get(canon);
    if (name === undefined) names.set(canon, (name = `${names.size}`));
    return name;
  };
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
function mergeBy(rules: Work[], key: (w: Work) => string, half: 'peers' | 'ports', peersName: (peers: InternalPeer[] | null) => string): Work[] {
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
      // Normalized lists: the union depends only on the distinct ones (many
      // policies name the same pods), and one list is its own union.
      const lists = new Map<string, InternalPeer[]>();
      for (const r of g) if (r.peers !== null) lists.set(peersName(r.peers), r.peers);
      const peers = g.some((r) => r.peers === null) ? null : lists.size === 1 ? [...lists.values()][0]! : normalizePeers([...lists.values()].flat());
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
  const peersName = peerListNamer();
  for (let before = Infinity; rules.length < before; ) {
    before = rules.length;
    rules = mergeBy(rules, (r) => portsKey(r.ports), 'peers', peersName);
    rules = mergeBy(rules, (r) => peersName(r.peers), 'ports', peersName);
  }
  // Ordered by "ports|peers" text. Merging left every rule its own ports, so
  // the ports (and the "|" after them) decide: the peers' text, which can run
  // to thousands of addresses, is only built for a tie.
  const order = (a: { key: string; r: Work }, b: { key: string; r: Work }): number => {
    if (a.key !== b.key) return a.key < b.key ? -1 : 1;
    const pa = peersKey(a.r.peers);
    const pb = peersKey(b.r.peers);
    return pa < pb ? -1 : pa > pb ? 1 : 0;
  };
  return rules
    .map((r) => ({ key: `${portsKey(r.ports)}|`, r }))
    .sort(order)
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
