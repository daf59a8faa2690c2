// NetworkPolicy in the iptables dataplane, as text: the ipsets (ipset restore)
// and chains (iptables-restore --noflush) that enforce compiled
// EndpointPolicy objects, and the parser of iptables-save that tells what the
// kernel holds. Pure: no process, no kernel; policy.ts applies it.
//
// Shape (filter table, all chains ours):
//   VNET-FORWARD (node chain)  -j VNET-POL-FWD first, then the ACCEPTs of pod traffic
//   VNET-POL-FWD               ESTABLISHED,RELATED -> RETURN (replies, stateful), first;
//                              per endpoint: --physdev-in <hostVeth> (mode bridge) or -i <hostVeth>
//                                            (routed, mode transparent) -> VNET-POLE-<hostVeth> (egress)
//                                            -d <pod>/32                -> VNET-POLI-<hostVeth> (ingress)
//   VNET-POLE-/VNET-POLI-...   one line per compiled rule x peer set x protocol x port chunk, RETURN
//                              on a match; the last line DROPs (its counter counts the drops)
// A chain only ever RETURNs or DROPs: the accept stays with VNET-FORWARD, so a
// same-VM packet passes its sender's egress chain and its receiver's ingress chain,
// and the order of the endpoints' dispatch lines does not matter: a change adds
// and deletes its own endpoints' lines and leaves the others' alone.
import { createHash } from 'node:crypto';
import { DataplaneError } from '../../errors.js';
import type { CompiledRule, DirectionPolicy, EndpointPolicy, IpFamily, L4Protocol, PeerCidr, PortRange } from '../../policy/types.js';
import type { NetworkMode } from '../types.js';
import { COMMENT, FORWARD_CHAIN, POLICY_FWD_CHAIN, POLICY_JUMP_SPEC } from './rules.js';
import { formatIPv4, parseCidr, prefixMask } from '../../../cni/ip.js';

export { FORWARD_CHAIN, POLICY_FWD_CHAIN, POLICY_JUMP_SPEC };
export const INGRESS_PREFIX = 'VNET-POLI-';
export const EGRESS_PREFIX = 'VNET-POLE-';
/** Every policy chain name starts with this (and nothing else of ours does). */
export const POLICY_CHAIN_PREFIX = 'VNET-POL';
/** ipset names: the family is in the name so IPv6 sets ("VNET-P6-") can sit beside them. */
export const SET_PREFIX: Record<IpFamily, string> = { ipv4: 'VNET-P4-' };
const SET_FAMILY: Record<IpFamily, string> = { ipv4: 'inet' };
/** A set is filled under this suffix and renamed when complete: a set with the final name is always whole. */
export const SET_TMP_SUFFIX = '-t';
/** multiport takes at most 15 ports, a range counting as two. */
const MULTIPORT_SLOTS = 15;

export type Direction = 'ingress' | 'egress';

export function chainName(direction: Direction, hostVeth: string): string {
  // Interface names are at most 15 characters; iptables chain names at most 28.
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(hostVeth)) throw new DataplaneError(`host veth name ${JSON.stringify(hostVeth)} cannot name a policy chain`);
  return (direction === 'ingress' ? INGRESS_PREFIX : EGRESS_PREFIX) + hostVeth;
}

// ---------------------------------------------------------------------------
// IPv4 prefixes
// ---------------------------------------------------------------------------

interface Prefix {
  base: number;
  len: number;
}

/** An address or a CIDR (a bare address is its /32), host bits cleared; parsing is cni/ip.ts's. */
function parseV4(cidr: string): Prefix {
  const text = cidr.trim();
  const parsed = parseCidr(text.includes('/') ? text : `${text}/32`);
  if (parsed === undefined) throw new DataplaneError(`policy peer ${JSON.stringify(cidr)} is not an IPv4 CIDR`);
  return { base: parsed.network, len: parsed.prefixLength };
}

const mask = prefixMask;

function v4Text(p: Prefix): string {
  return `${formatIPv4(p.base)}/${p.len}`;
}

/** a contains b (a is as wide or wider and b's addresses are inside it). */
function contains(a: Prefix, b: Prefix): boolean {
  return a.len <= b.len && ((b.base & mask(a.len)) >>> 0) === a.base;
}

// ---------------------------------------------------------------------------
// Peer sets
// ---------------------------------------------------------------------------

export interface SetEntry {
  cidr: string;
  nomatch: boolean;
}

export interface PeerSet {
  name: string;
  family: IpFamily;
  /** Sorted; a `nomatch` entry carves an ipBlock except out of a wider entry. */
  entries: SetEntry[];
}

interface NormalPeer {
  cidr: Prefix;
  except: Prefix[];
}

/** A peer with its excepts cleaned: excepts outside the CIDR dropped; undefined if an except covers it all. */
function normalPeer(p: PeerCidr): NormalPeer | undefined {
  const cidr = parseV4(p.cidr);
  const except: Prefix[] = [];
  for (const e of p.except) {
    const x = parseV4(e);
    if (contains(x, cidr)) return undefined;
    if (contains(cidr, x) && !except.some((y) => contains(y, x))) except.push(x);
  }
  return { cidr, except: except.filter((x) => !except.some((y) => y !== x && contains(y, x))) };
}

/**
 * hash:net answers with the most specific entry, so a `nomatch` except of one
 * peer would also hide the addresses another peer of the same set allows if
 * that peer's CIDR contains the except. Such peers go to separate sets (rare:
 * overlapping ipBlocks in one rule); the rule then has one line per set.
 */
function conflicts(a: NormalPeer, b: NormalPeer): boolean {
  return a.except.some((e) => contains(b.cidr, e)) || b.except.some((e) => contains(a.cidr, e));
}

/** hash:net has no /0: the whole space is its two halves. */
function entriesOf(p: NormalPeer): SetEntry[] {
  const halves = p.cidr.len === 0 ? [{ base: 0, len: 1 }, { base: 0x80000000, len: 1 }] : [p.cidr];
  return [...halves.map((h) => ({ cidr: v4Text(h), nomatch: false })), ...p.except.map((e) => ({ cidr: v4Text(e), nomatch: true }))];
}

function setName(family: IpFamily, entries: SetEntry[]): string {
  const digest = createHash('sha256').update(`hash:net ${family}\n${entries.map((e) => `${e.cidr}${e.nomatch ? ' nomatch' : ''}`).join('\n')}`).digest('hex');
  return SET_PREFIX[family] + digest.slice(0, 16);
}

function entryKey(e: SetEntry): string {
  const p = parseV4(e.cidr);
  return `${p.base.toString(16).padStart(8, '0')}/${String(p.len).padStart(2, '0')}${e.nomatch ? '!' : ''}`;
}

/**
 * The sets that together hold a rule's peers. The name is a digest of the
 * content, so equal peer lists share one set across rules and endpoints, and
 * a changed list is a new set: the old one is never edited in place.
 */
export function peerSets(peers: readonly PeerCidr[]): PeerSet[] {
  const groups: NormalPeer[][] = [];
  for (const peer of peers) {
    if (peer.family !== 'ipv4') throw new DataplaneError(`policy peer family ${String(peer.family)} is not supported by the iptables dataplane yet`);
    const p = normalPeer(peer);
    if (!p) continue;
    const group = groups.find((g) => !g.some((q) => conflicts(p, q)));
    if (group) group.push(p);
    else groups.push([p]);
  }
  return groups.map((g) => {
    // No conflicts within a group: an entry is never both a match and a nomatch.
    const byKey = new Map<string, SetEntry>();
    for (const e of g.flatMap(entriesOf)) byKey.set(entryKey(e), e);
    const entries = [...byKey.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, e]) => e);
    return { name: setName('ipv4', entries), family: 'ipv4' as const, entries };
  });
}

// ---------------------------------------------------------------------------
// Chains
// ---------------------------------------------------------------------------

const PROTO: Record<L4Protocol, string> = { TCP: 'tcp', UDP: 'udp', SCTP: 'sctp' };

/** Port ranges of one protocol, merged, in multiport chunks of at most 15 slots. */
function portChunks(ranges: readonly PortRange[]): string[] {
  const sorted = [...ranges].map((r) => ({ lo: Math.min(r.port, r.endPort), hi: Math.max(r.port, r.endPort) })).sort((a, b) => a.lo - b.lo);
  const merged: { lo: number; hi: number }[] = [];
  for (const r of sorted) {
    if (!Number.isInteger(r.lo) || !Number.isInteger(r.hi) || r.lo < 1 || r.hi > 65535) throw new DataplaneError(`policy port range ${r.lo}-${r.hi} is outside 1-65535`);
    const last = merged[merged.length - 1];
    if (last && r.lo <= last.hi + 1) last.hi = Math.max(last.hi, r.hi);
    else merged.push({ ...r });
  }
  const chunks: string[][] = [];
  let slots = 0;
  for (const r of merged) {
    const cost = r.lo === r.hi ? 1 : 2;
    if (!chunks.length || slots + cost > MULTIPORT_SLOTS) {
      chunks.push([]);
      slots = 0;
    }
    chunks[chunks.length - 1]!.push(r.lo === r.hi ? String(r.lo) : `${r.lo}:${r.hi}`);
    slots += cost;
  }
  return chunks.map((c) => c.join(','));
}

/** Protocol and port matches of a rule: `null` = one empty match (any protocol, ICMP included). */
function portMatches(ports: readonly PortRange[] | null): { proto: string; dports: string }[] {
  if (ports === null) return [{ proto: '', dports: '' }];
  const unknown = ports.find((p) => !(p.protocol in PROTO));
  if (unknown) throw new DataplaneError(`policy protocol ${String(unknown.protocol)} is not supported`);
  const out: { proto: string; dports: string }[] = [];
  for (const proto of ['TCP', 'UDP', 'SCTP'] as const) {
    const ranges = ports.filter((p) => p.protocol === proto);
    for (const chunk of ranges.length ? portChunks(ranges) : []) out.push({ proto: `-p ${PROTO[proto]} `, dports: `-m multiport --dports ${chunk} ` });
  }
  return out;
}

/**
 * The lines of one rule, in iptables-save's own order (-p before the -m
 * matches), so what the kernel gives back compares equal. The remote end is
 * the source for ingress and the destination for egress; ports are always
 * destination ports. Empty peers or ports match nothing: no line.
 */
function ruleLines(chain: string, direction: Direction, rule: CompiledRule, sets: Map<string, PeerSet>): string[] {
  const peerMatches: string[] = [];
  if (rule.peers === null) peerMatches.push('');
  else {
    for (const s of peerSets(rule.peers)) {
      sets.set(s.name, s);
      peerMatches.push(`-m set --match-set ${s.name} ${direction === 'ingress' ? 'src' : 'dst'} `);
    }
  }
  const lines: string[] = [];
  for (const port of portMatches(rule.ports)) {
    for (const peer of peerMatches) lines.push(`-A ${chain} ${port.proto}${peer}${port.dports}-j RETURN`);
  }
  return lines;
}

export interface EndpointChains {
  hostVeth: string;
  address: string;
  /** Chains to declare, with their lines (absent direction = not isolated: no chain). */
  chains: { name: string; direction: Direction; lines: string[] }[];
  /** The dispatch lines for VNET-POL-FWD. */
  dispatch: string[];
  sets: PeerSet[];
}

function commentText(text: string): string {
  // iptables-save quotes a comment with spaces; keep it to characters that need no escaping.
  return text.replace(/[^A-Za-z0-9 ./:_-]/g, '_').slice(0, 200);
}

function dropLine(chain: string, who: string, direction: Direction): string {
  return `-A ${chain} -m comment --comment "${commentText(`${COMMENT}: ${who} ${direction} not allowed by policy`)}" -j DROP`;
}

/**
 * Rules with the same ports are one rule over the union of their peers (any
 * peer absorbs the rest): many policies that open one port to different pods
 * cost one set lookup, not one line each.
 */
export function mergeRules(rules: readonly CompiledRule[]): CompiledRule[] {
  const byPorts = new Map<string, CompiledRule>();
  for (const r of rules) {
    const key = r.ports === null ? '*' : JSON.stringify([...r.ports].map((p) => [p.protocol, p.port, p.endPort]).sort());
    const seen = byPorts.get(key);
    if (!seen) byPorts.set(key, { peers: r.peers === null ? null : [...r.peers], ports: r.ports, sources: [...r.sources] });
    else {
      seen.peers = seen.peers === null || r.peers === null ? null : [...seen.peers, ...r.peers];
      seen.sources.push(...r.sources);
    }
  }
  return [...byPorts.values()];
}

/** The first line of VNET-POL-FWD while any endpoint is dispatched: replies of allowed flows skip every chain. */
export const REPLIES_LINE = `-A ${POLICY_FWD_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "${COMMENT}: replies of allowed flows" -j RETURN`;

/** Everything one endpoint's policy needs; `mode` is the pod's shape (absent = bridge), which decides the egress match. */
export function renderEndpoint(hostVeth: string, policy: EndpointPolicy, mode?: NetworkMode): EndpointChains {
  if (policy.family !== 'ipv4') throw new DataplaneError(`policy family ${String(policy.family)} is not supported by the iptables dataplane yet`);
  const address = v4Text(parseV4(policy.address));
  if (!address.endsWith('/32')) throw new DataplaneError(`policy address ${policy.address} is not a single IPv4 address`);
  const who = policy.pod ?? hostVeth;
  const sets = new Map<string, PeerSet>();
  const chains: EndpointChains['chains'] = [];
  const dispatch: string[] = [];
  const directions: [Direction, DirectionPolicy][] = [['egress', policy.egress], ['ingress', policy.ingress]];
  for (const [direction, dp] of directions) {
    if (!dp.isolated) continue;
    const name = chainName(direction, hostVeth);
    const lines = mergeRules(dp.rules).flatMap((r) => ruleLines(name, direction, r, sets));
    lines.push(dropLine(name, who, direction));
    chains.push({ name, direction, lines });
    // Egress by the pod's port: bridged (mode bridge: the bridge port, physdev) or routed (mode transparent:
    // the veth is the in-interface). Only the line of the pod's own shape: the other never matches.
    const match = direction === 'ingress' ? `-d ${address} ` : mode === 'transparent' ? `-i ${hostVeth} ` : `-m physdev --physdev-in ${hostVeth} `;
    dispatch.push(`-A ${POLICY_FWD_CHAIN} ${match}-m comment --comment "${commentText(`${COMMENT}: ${who} ${direction}`)}" -j ${name}`);
  }
  return { hostVeth, address, chains, dispatch, sets: [...sets.values()] };
}

// ---------------------------------------------------------------------------
// What the kernel holds: iptables-save -t filter (the whole table), or
// `iptables -S` of a few chains (an endpoint's own change or check)
// ---------------------------------------------------------------------------

export interface KernelPolicyEndpoint {
  hostVeth: string;
  /** The ingress dispatch's pod address (x.x.x.x/32), if ingress is isolated. */
  address?: string;
  /** Dispatch lines as saved (kept verbatim for endpoints an update does not name). */
  dispatch: string[];
  chains: Map<string, string[]>;
}

export interface KernelPolicy {
  /** VNET-FORWARD exists (the node is set up) and whether its first rule is the policy jump. */
  forwardChain: boolean;
  jumpFirst: boolean;
  jumpPresent: boolean;
  dispatchChain: boolean;
  endpoints: Map<string, KernelPolicyEndpoint>;
  /** Every VNET-POL* chain the kernel has (dispatch included). */
  chainNames: Set<string>;
  /** ipsets referenced by each policy chain. */
  setRefs: Map<string, Set<string>>;
  /** Where VNET-POL-FWD has the replies line: first (as it must be), elsewhere, or not at all. */
  replies: 'first' | 'elsewhere' | 'absent';
  /**
   * The whole table was read. Otherwise only VNET-FORWARD, VNET-POL-FWD and the chains of the
   * endpoints a change names: other endpoints' chains are known by name (their dispatch targets),
   * not by content, and the sets they reference are unknown.
   */
  complete: boolean;
}

/** Strip iptables-save -c counters ("[1:2] -A ..."). */
function stripCounters(line: string): string {
  return line.replace(/^\[\d+:\d+\] /, '');
}

/**
 * `iptables -S <chain>` output of some chains (each "-N chain" then its "-A" lines, as
 * iptables-save prints them) as the partial KernelPolicy of parsePolicySave.
 */
export function parseChainListings(listings: readonly string[]): KernelPolicy {
  const lines = ['*filter'];
  for (const text of listings) {
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      const decl = /^-N (\S+)$/.exec(line);
      if (decl) lines.push(`:${decl[1]} - [0:0]`);
      else if (line.startsWith('-A ')) lines.push(line);
    }
  }
  lines.push('COMMIT');
  return { ...parsePolicySave(lines.join('\n')), complete: false };
}

export function parsePolicySave(text: string): KernelPolicy {
  const out: KernelPolicy = {
    forwardChain: false, jumpFirst: false, jumpPresent: false, dispatchChain: false, endpoints: new Map(), chainNames: new Set(), setRefs: new Map(),
    replies: 'absent', complete: true,
  };
  let table = '';
  let forwardRules = 0;
  let dispatchRules = 0;
  const endpoint = (hostVeth: string): KernelPolicyEndpoint => {
    let e = out.endpoints.get(hostVeth);
    if (!e) out.endpoints.set(hostVeth, (e = { hostVeth, dispatch: [], chains: new Map() }));
    return e;
  };
  const vethOf = (chain: string): string | undefined =>
    chain.startsWith(INGRESS_PREFIX) ? chain.slice(INGRESS_PREFIX.length) : chain.startsWith(EGRESS_PREFIX) ? chain.slice(EGRESS_PREFIX.length) : undefined;
  for (const raw of text.split('\n')) {
    const line = stripCounters(raw.trim());
    if (line.startsWith('*')) table = line.slice(1);
    if (table !== 'filter') continue;
    const decl = /^:(\S+) /.exec(line);
    if (decl) {
      const chain = decl[1]!;
      if (chain === FORWARD_CHAIN) out.forwardChain = true;
      if (chain === POLICY_FWD_CHAIN) out.dispatchChain = true;
      if (chain.startsWith(POLICY_CHAIN_PREFIX)) out.chainNames.add(chain);
      const veth = vethOf(chain);
      if (veth) endpoint(veth).chains.set(chain, endpoint(veth).chains.get(chain) ?? []);
      continue;
    }
    const rule = /^-A (\S+) (.*)$/.exec(line);
    if (!rule) continue;
    const [, chain, body] = rule as unknown as [string, string, string];
    if (chain === FORWARD_CHAIN) {
      if (body === POLICY_JUMP_SPEC) {
        out.jumpPresent = true;
        if (forwardRules === 0) out.jumpFirst = true;
      }
      forwardRules++;
      continue;
    }
    if (!chain.startsWith(POLICY_CHAIN_PREFIX)) continue;
    for (const m of body.matchAll(/--match-set (\S+) /g)) {
      let refs = out.setRefs.get(chain);
      if (!refs) out.setRefs.set(chain, (refs = new Set()));
      refs.add(m[1]!);
    }
    if (chain === POLICY_FWD_CHAIN) {
      if (line === REPLIES_LINE) out.replies = dispatchRules === 0 ? 'first' : 'elsewhere';
      dispatchRules++;
      const target = /-j (\S+)$/.exec(body)?.[1];
      const veth = target ? vethOf(target) : undefined;
      if (!veth) continue;
      const e = endpoint(veth);
      e.dispatch.push(line);
      // A jump's target exists: a partial read knows the chain by name even if it did not list it.
      if (!e.chains.has(target!)) e.chains.set(target!, []);
      out.chainNames.add(target!);
      if (target!.startsWith(INGRESS_PREFIX)) {
        const d = /(?:^| )-d (\S+)/.exec(body)?.[1];
        if (d) e.address = d.includes('/') ? d : `${d}/32`;
      }
      continue;
    }
    const veth = vethOf(chain);
    if (veth) {
      const e = endpoint(veth);
      e.chains.set(chain, [...(e.chains.get(chain) ?? []), line]);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// One transaction
// ---------------------------------------------------------------------------

export interface PolicyPlan {
  /** ipset restore input creating the sets the new chains need that the kernel lacks ('' = none). */
  ipsetRestore: string;
  /** iptables-restore --noflush input ('' = nothing to change). */
  iptablesRestore: string;
  /** Our sets no chain references once the restore is in: destroy them afterwards. */
  staleSets: string[];
}

/**
 * Wanted per endpoint: a policy to program, or null to remove whatever the endpoint has; `mode` is the
 * pod's shape (absent = bridge).
 */
export type PolicyChange = { hostVeth: string; policy: EndpointPolicy | null; mode?: NetworkMode };

function ipsetCreate(s: PeerSet): string[] {
  const tmp = s.name + SET_TMP_SUFFIX;
  return [
    `create ${tmp} hash:net family ${SET_FAMILY[s.family]} hashsize 64 maxelem 1048576`,
    `flush ${tmp}`,
    ...s.entries.map((e) => `add ${tmp} ${e.cidr}${e.nomatch ? ' nomatch' : ''}`),
    `rename ${tmp} ${s.name}`,
  ];
}

function addressOf(p: EndpointPolicy): string {
  return v4Text(parseV4(p.address));
}

/** Whether a change has anything to do: a policy that isolates, or kernel state of a named endpoint (or of its address). */
export function changeTouches(kernel: KernelPolicy, changes: readonly PolicyChange[]): boolean {
  const endpoints = [...kernel.endpoints.values()];
  return changes.some((c) =>
    (c.policy !== null && (c.policy.ingress.isolated || c.policy.egress.isolated)) ||
    kernel.endpoints.has(c.hostVeth) ||
    (c.policy !== null && endpoints.some((e) => e.address === addressOf(c.policy!))));
}

/** The chains a change reads besides VNET-FORWARD and VNET-POL-FWD: the named endpoints' own. */
export function chainsToRead(changes: readonly PolicyChange[]): string[] {
  return changes.flatMap((c) => [chainName('egress', c.hostVeth), chainName('ingress', c.hostVeth)]);
}

/**
 * The whole change as one ipset restore and one iptables-restore that touch
 * only the named endpoints: their chains are redeclared (flushed and refilled
 * in the same commit) or flushed and deleted, their dispatch lines that
 * differ deleted (-D) and the missing ones appended; the replies line is
 * kept first while any endpoint is dispatched. A policy that isolates
 * nothing is a removal. A named endpoint's address taken over from another
 * veth (a stale endpoint a crash left) removes that endpoint's policy too.
 * `kernel` may be partial (parseChainListings of VNET-FORWARD, VNET-POL-FWD
 * and chainsToRead): then the stale sets are those the named endpoints' old
 * chains referenced (the caller destroys only the ones no chain still uses).
 */
export function planPolicyChange(kernel: KernelPolicy, changes: readonly PolicyChange[], existingSets: ReadonlySet<string>): PolicyPlan {
  const named = new Map<string, EndpointChains | null>();
  for (const c of changes) {
    const r = c.policy ? renderEndpoint(c.hostVeth, c.policy, c.mode) : null;
    named.set(c.hostVeth, r && r.chains.length ? r : null);
  }
  const taken = new Set(changes.flatMap((c) => (c.policy ? [addressOf(c.policy)] : [])));
  for (const e of kernel.endpoints.values()) {
    if (!named.has(e.hostVeth) && e.address && taken.has(e.address)) named.set(e.hostVeth, null);
  }
  let keptDispatch = 0;
  const keptRefs = new Set<string>();
  for (const e of kernel.endpoints.values()) {
    if (named.has(e.hostVeth)) continue;
    keptDispatch += e.dispatch.length;
    for (const chain of e.chains.keys()) for (const s of kernel.setRefs.get(chain) ?? []) keptRefs.add(s);
  }
  const declare = new Map<string, string[]>();
  const remove: string[] = [];
  const newSets = new Map<string, PeerSet>();
  const delDispatch: string[] = [];
  const addDispatch: string[] = [];
  const oldRefs = new Set<string>();
  for (const [hostVeth, r] of named) {
    const k = kernel.endpoints.get(hostVeth);
    const wanted = new Set(r?.chains.map((c) => c.name) ?? []);
    for (const c of r?.chains ?? []) declare.set(c.name, c.lines);
    for (const s of r?.sets ?? []) newSets.set(s.name, s);
    const want = new Set(r?.dispatch ?? []);
    const have = new Set(k?.dispatch ?? []);
    delDispatch.push(...[...have].filter((l) => !want.has(l)));
    addDispatch.push(...[...want].filter((l) => !have.has(l)));
    for (const chain of k?.chains.keys() ?? []) {
      if (!wanted.has(chain)) remove.push(chain);
      for (const s of kernel.setRefs.get(chain) ?? []) oldRefs.add(s);
    }
  }
  const dispatched = keptDispatch + [...named.values()].reduce((n, r) => n + (r?.dispatch.length ?? 0), 0) > 0;
  // Unchanged content and nothing else to do: no transaction at all (an idempotent re-apply).
  const unchanged =
    kernel.dispatchChain && kernel.jumpFirst && remove.length === 0 && (kernel.replies === 'first') === dispatched &&
    [...named].every(([hostVeth, r]) => {
      const k = kernel.endpoints.get(hostVeth);
      if (!r) return !k || (k.chains.size === 0 && k.dispatch.length === 0);
      return k !== undefined && sameLines(k.dispatch, r.dispatch) && r.chains.every((c) => sameLines(k.chains.get(c.name) ?? [], c.lines)) && k.chains.size === r.chains.length;
    });
  // What the chains reference once this is in; with the whole table read, our other sets (and fill
  // leftovers of a crash) go; otherwise the named endpoints' old sets and fill leftovers are candidates.
  const referenced = new Set([...keptRefs, ...newSets.keys()]);
  const ours = (s: string): boolean => s.startsWith(SET_PREFIX.ipv4);
  const staleSets = kernel.complete
    ? [...existingSets].filter((s) => ours(s) && !referenced.has(s))
    : [...new Set([...oldRefs, ...[...existingSets].filter((s) => s.endsWith(SET_TMP_SUFFIX))])].filter((s) => ours(s) && !newSets.has(s) && existingSets.has(s));
  if (unchanged) return { ipsetRestore: '', iptablesRestore: '', staleSets };
  const create = [...newSets.values()].filter((s) => !existingSets.has(s.name));
  // Declaring VNET-POL-FWD would flush every endpoint's dispatch: only when it does not exist.
  const lines = ['*filter'];
  if (!kernel.dispatchChain) lines.push(`:${POLICY_FWD_CHAIN} - [0:0]`);
  for (const name of declare.keys()) lines.push(`:${name} - [0:0]`);
  for (const name of remove) lines.push(`:${name} - [0:0]`);
  if (!kernel.jumpFirst) {
    if (kernel.jumpPresent) lines.push(`-D ${FORWARD_CHAIN} ${POLICY_JUMP_SPEC}`);
    lines.push(`-I ${FORWARD_CHAIN} 1 ${POLICY_JUMP_SPEC}`);
  }
  for (const l of delDispatch) lines.push(`-D${l.slice(2)}`);
  if (kernel.replies !== 'absent' && (!dispatched || kernel.replies === 'elsewhere')) lines.push(`-D${REPLIES_LINE.slice(2)}`);
  if (dispatched && kernel.replies !== 'first') lines.push(`-I ${POLICY_FWD_CHAIN} 1${REPLIES_LINE.slice(`-A ${POLICY_FWD_CHAIN}`.length)}`);
  for (const chainLines of declare.values()) lines.push(...chainLines);
  lines.push(...addDispatch);
  for (const name of remove) lines.push(`-X ${name}`);
  lines.push('COMMIT', '');
  return {
    ipsetRestore: create.length ? [...create.flatMap(ipsetCreate), ''].join('\n') : '',
    iptablesRestore: lines.join('\n'),
    staleSets,
  };
}

function sameLines(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((l, i) => l === b[i]);
}

export interface PolicyDrop {
  hostVeth: string;
  direction: Direction;
  packets: bigint;
}

/** The DROP counters of every policy chain, from `iptables-save -c -t filter`. */
export function parsePolicyDrops(text: string): PolicyDrop[] {
  const out: PolicyDrop[] = [];
  let table = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) table = line.slice(1);
    if (table !== 'filter') continue;
    const m = /^\[(\d+):\d+\] -A (VNET-POL[IE]-(\S+)) .*-j DROP$/.exec(line);
    if (!m) continue;
    out.push({ hostVeth: m[3]!, direction: m[2]!.startsWith(INGRESS_PREFIX) ? 'ingress' : 'egress', packets: BigInt(m[1]!) });
  }
  return out;
}

/** iptables-restore input that removes every policy chain (node teardown), given what the kernel has. */
export function renderPolicyTeardown(kernel: KernelPolicy): string {
  if (kernel.chainNames.size === 0 && !kernel.jumpPresent) return '';
  const lines = ['*filter'];
  for (const name of kernel.chainNames) lines.push(`:${name} - [0:0]`);
  if (kernel.jumpPresent) lines.push(`-D ${FORWARD_CHAIN} ${POLICY_JUMP_SPEC}`);
  for (const name of kernel.chainNames) lines.push(`-X ${name}`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** ipset restore input destroying these sets. */
export function renderSetDestroy(names: readonly string[]): string {
  return names.length ? [...names.map((n) => `destroy ${n}`), ''].join('\n') : '';
}
