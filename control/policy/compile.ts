// The policy compiler: a snapshot of NetworkPolicies, Namespaces and Pods plus
// this node's endpoints → one EndpointPolicy per local endpoint, and the
// problems found. Pure: no I/O, no clock, deterministic output (see
// normalize.ts). Both dataplanes program its result; nothing else of policy
// reaches them.
//
// Semantics (networking.k8s.io/v1):
//  - a policy selects the pods of its own namespace that match spec.podSelector;
//  - a pod is isolated for a direction iff a policy selecting it has that
//    direction in its policyTypes (default: Ingress, plus Egress when
//    spec.egress is non-empty); an isolated direction allows the union of the
//    rules of every policy selecting the pod for it, nothing else;
//  - a rule's peers: `from`/`to` absent or empty = every address; each peer is
//    an ipBlock (cidr minus except), or pods chosen by podSelector (in the
//    policy's namespace) and/or namespaceSelector (both in one peer = AND,
//    separate peers = OR);
//  - a rule's ports: absent or empty = every port and protocol; a named port
//    is the destination pod's container port of that name and protocol: the
//    local pod's for ingress, each peer pod's for egress (so an egress rule
//    can compile into one rule per peer pod).
import { cidrContainsIp, hostCidr4, parseIpv4 } from './cidr.js';
import { normalizeRules, PeerLists, type InternalPeer, type RuleAtom } from './normalize.js';
import { ANY_NAMESPACE, parsePolicy, type NamedPort, type ParsedPolicy, type ParsedRule } from './parse.js';
import type { DirectionPolicy, EndpointPolicy, IpFamily, L4Protocol, NetworkPolicy, PolicyNamespace, PolicyPod, PolicyProblem, PolicySnapshot, PortRange } from './types.js';

/** A pod endpoint on this node, as the agent knows it (CNI_ARGS K8S_POD_NAMESPACE/K8S_POD_NAME). */
export interface LocalEndpoint {
  family: IpFamily;
  address: string;
  namespace?: string;
  name?: string;
}

export interface CompileStats {
  /** Policies in the snapshot, and those read whole (the rest are broken: they isolate what they select, fail closed). */
  policies: number;
  validPolicies: number;
  /** Label selectors compiled (policy podSelectors and peer selectors). */
  selectors: number;
  /** Compiled rules summed over the local endpoints and directions. */
  rules: number;
  /** Peer CIDRs summed over every compiled rule. */
  peers: number;
}

export interface CompileResult {
  /** One per local endpoint (or per `only` endpoint), in the order given. */
  endpoints: EndpointPolicy[];
  /** Local endpoint address → the policies selecting it ("namespace/name", sorted). */
  selectedBy: Map<string, string[]>;
  problems: PolicyProblem[];
  stats: CompileStats;
}

/** The label every namespace carries (the API server sets it since Kubernetes 1.21). */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

interface Pod {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  ips: number[];
  namedPorts: Array<{ name: string; protocol: L4Protocol; port: number }>;
  /** Its addresses as shared peers (Cluster.podPeers; a copy with other ips must drop it). */
  peers?: InternalPeer[] | undefined;
}

/** The cluster as rules resolve against it: pods by namespace (only namespaces with pods), namespace labels, shared peers. */
interface Cluster {
  pods(): Iterable<Pod>;
  podsByNs: Map<string, Map<string, Pod>>;
  nsLabels(ns: string): Record<string, string>;
  /** One peer object per pod address, shared by every rule naming it. */
  hostPeer: (ip: number) => InternalPeer;
  /** A pod's addresses as shared peers. */
  podPeers: (pod: Pod) => InternalPeer[];
  /** One list object per distinct resolved peer list: rules naming the same pods share it, and its normalization. */
  peerLists: PeerLists;
  /** The peers of rules written alike (key: namespace and peers text), resolved once since the last update. */
  peersOf: (key: string, resolve: () => InternalPeer[]) => InternalPeer[];
  /** Counts a policy's peers resolved (CompilerWork). */
  resolved: () => void;
}

/** A rule with its peers resolved against the cluster (independent of the local endpoint). */
interface ResolvedRule {
  rule: ParsedRule;
  /** null: every address. */
  peers: InternalPeer[] | null;
  /** Visit the pods among the peers (for egress named ports) with the peer addresses each owns. */
  forEachPeerPod: (fn: (pod: Pod, ips: number[]) => void) => void;
}

function resolveRule(rule: ParsedRule, policyNs: string, c: Cluster): ResolvedRule {
  if (rule.all) {
    return {
      rule,
      peers: null,
      forEachPeerPod: (fn) => {
        for (const pod of c.pods()) if (pod.ips.length > 0) fn(pod, pod.ips);
      },
    };
  }
  // The pods the selector peers choose (a pod chosen twice is visited twice).
  const forEachSelected = (fn: (pod: Pod) => void): void => {
    for (const sp of rule.selectorPeers) {
      const nsNames = sp.ns ? [...c.podsByNs.keys()].filter((n) => sp.ns!(c.nsLabels(n))) : [policyNs];
      for (const ns of nsNames) {
        const pods = c.podsByNs.get(ns);
        if (pods) for (const pod of pods.values()) if (!sp.pod || sp.pod(pod.labels)) fn(pod);
      }
    }
  };
  // Many policies' rules read alike (the same peers in one namespace): resolved once per update.
  const peers = c.peersOf(`${policyNs}\n${rule.peersText}`, () => {
    // Duplicates are left to normalization, which drops them anyway.
    const list: InternalPeer[] = rule.ipBlocks.map((b) => ({ cidr: b.cidr, except: b.except }));
    forEachSelected((pod) => {
      for (const p of c.podPeers(pod)) list.push(p);
    });
    return c.peerLists.intern(list);
  });
  const inBlocks = (ip: number): boolean =>
    rule.ipBlocks.some((b) => cidrContainsIp(b.cidr, ip) && !b.except.some((e) => cidrContainsIp(e, ip)));
  return {
    rule,
    peers,
    // Only egress named ports ask (in the same compile as the peers above, or
    // after an invalidation: the cluster has not moved under the selectors).
    forEachPeerPod: (fn) => {
      const selected = new Set<Pod>();
      forEachSelected((pod) => selected.add(pod));
      for (const pod of c.pods()) {
        if (selected.has(pod)) {
          if (pod.ips.length > 0) fn(pod, pod.ips);
        } else if (rule.ipBlocks.length > 0 && pod.namedPorts.length > 0) {
          const ips = pod.ips.filter(inBlocks);
          if (ips.length > 0) fn(pod, ips);
        }
      }
    },
  };
}

function resolveNamed(named: NamedPort[], pod: Pod | undefined): PortRange[] {
  if (!pod) return [];
  const out: PortRange[] = [];
  for (const n of named) {
    for (const cp of pod.namedPorts) {
      if (cp.name === n.name && cp.protocol === n.protocol) out.push({ protocol: n.protocol, port: cp.port, endPort: cp.port });
    }
  }
  return out;
}

function namedText(n: NamedPort): string {
  return `"${n.name}"/${n.protocol}`;
}

/** One valid policy as the compiler keeps it across updates (one per policy object). */
class CompiledPolicy {
  /** Bumped whenever the resolved peers are dropped (a pod or namespace a selector names changed). */
  rev = 0;
  private resolvedIngress: ResolvedRule[] | undefined;
  private resolvedEgress: ResolvedRule[] | undefined;
  /** The policy's egress atoms: they do not depend on the local endpoint. */
  egressAtoms: RuleAtom[] | undefined;
  egressProblems: PolicyProblem[] = [];
  /** Some ingress rule names a port: the local pod's ports matter. */
  readonly ingressNamed: boolean;
  /** Egress named ports over every address or an ipBlock: every pod's ports matter. */
  readonly podWide: boolean;

  constructor(
    /** Unique for the compiler's life: with rev, what memo keys name a policy by. */
    readonly id: number,
    readonly parsed: ParsedPolicy,
    private readonly cluster: Cluster,
  ) {
    this.ingressNamed = parsed.ingressRules.some((r) => (r.ports?.named.length ?? 0) > 0);
    this.podWide = parsed.egressRules.some((r) => (r.ports?.named.length ?? 0) > 0 && (r.all || r.ipBlocks.length > 0));
  }

  // Peers are resolved on first use: a compile for one endpoint resolves only the policies selecting it.
  get ingress(): ResolvedRule[] {
    if (!this.resolved) this.cluster.resolved();
    return (this.resolvedIngress ??= this.parsed.ingressRules.map((r) => resolveRule(r, this.parsed.namespace, this.cluster)));
  }
  get egress(): ResolvedRule[] {
    if (!this.resolved) this.cluster.resolved();
    return (this.resolvedEgress ??= this.parsed.egressRules.map((r) => resolveRule(r, this.parsed.namespace, this.cluster)));
  }
  get resolved(): boolean {
    return this.resolvedIngress !== undefined || this.resolvedEgress !== undefined;
  }

  /** Forget the resolved peers (the cluster changed under a selector): the next use resolves again. */
  invalidate(): void {
    this.resolvedIngress = undefined;
    this.resolvedEgress = undefined;
    this.egressAtoms = undefined;
    this.egressProblems = [];
    this.rev++;
  }

  /** Does some namespace selector of this policy tell the two label sets apart? */
  separatesNamespaces(a: Record<string, string>, b: Record<string, string>): boolean {
    for (const rules of [this.parsed.ingressRules, this.parsed.egressRules]) {
      for (const r of rules) for (const sp of r.selectorPeers) if (sp.ns && sp.ns(a) !== sp.ns(b)) return true;
    }
    return false;
  }
}

function ingressAtoms(cp: CompiledPolicy, pod: Pod | undefined): RuleAtom[] {
  return cp.ingress.map((rr) => {
    const { ports } = rr.rule;
    if (ports === null) return { peers: rr.peers, ports: null, sources: [cp.parsed.key] };
    return { peers: rr.peers, ports: [...ports.ranges, ...resolveNamed(ports.named, pod)], sources: [cp.parsed.key] };
  });
}

function checkIngressNamed(cp: CompiledPolicy, pod: Pod, problems: PolicyProblem[]): void {
  for (const rr of cp.ingress) {
    for (const n of rr.rule.ports?.named ?? []) {
      if (resolveNamed([n], pod).length === 0) {
        problems.push({
          policy: cp.parsed.key,
          message: `named port ${namedText(n)} is not a container port of pod ${pod.namespace}/${pod.name}: it allows nothing there`,
        });
      }
    }
  }
}

function egressAtoms(cp: CompiledPolicy, c: Cluster): RuleAtom[] {
  if (cp.egressAtoms) return cp.egressAtoms;
  const problems: PolicyProblem[] = [];
  const out: RuleAtom[] = [];
  for (const rr of cp.egress) {
    const { ports } = rr.rule;
    if (ports === null) {
      out.push({ peers: rr.peers, ports: null, sources: [cp.parsed.key] });
      continue;
    }
    if (ports.ranges.length > 0) out.push({ peers: rr.peers, ports: ports.ranges, sources: [cp.parsed.key] });
    if (ports.named.length === 0) continue;
    // Named ports are the destination's: peer pods grouped by what the names resolve to on them.
    const seen = new Set<string>();
    const byPorts = new Map<string, RuleAtom>();
    rr.forEachPeerPod((pod, ips) => {
      const resolved = resolveNamed(ports.named, pod);
      if (resolved.length === 0) return;
      for (const n of ports.named) if (resolveNamed([n], pod).length > 0) seen.add(namedText(n));
      const key = resolved.map((r) => `${r.protocol}${r.port}`).join(',');
      let atom = byPorts.get(key);
      if (!atom) byPorts.set(key, (atom = { peers: [], ports: resolved, sources: [cp.parsed.key] }));
      for (const ip of ips) atom.peers!.push(c.hostPeer(ip));
    });
    out.push(...byPorts.values());
    for (const n of ports.named) {
      if (!seen.has(namedText(n))) {
        problems.push({ policy: cp.parsed.key, message: `named port ${namedText(n)} is not a container port of any peer pod: it allows nothing` });
      }
    }
  }
  cp.egressAtoms = out;
  cp.egressProblems = problems;
  return out;
}

function direction(isolated: boolean, atoms: RuleAtom[]): DirectionPolicy {
  return isolated ? { isolated: true, rules: normalizeRules(atoms) } : { isolated: false, rules: [] };
}

function dedupeProblems(problems: PolicyProblem[]): PolicyProblem[] {
  const seen = new Set<string>();
  const out: PolicyProblem[] = [];
  for (const p of problems) {
    const k = `${p.policy}\n${p.message}`;
    if (!seen.has(k)) {
      seen.add(k);
      out.push(p);
    }
  }
  return out.sort((a, b) => (a.policy < b.policy ? -1 : a.policy > b.policy ? 1 : a.message < b.message ? -1 : a.message > b.message ? 1 : 0));
}

/** A default deny both ways: what an endpoint gets before the first sync. */
export function defaultDeny(ep: LocalEndpoint): EndpointPolicy {
  return uniform(ep, true);
}

/** Not isolated either way (everything allowed): what endpoints get when policy is turned off. */
export function allowAll(ep: LocalEndpoint): EndpointPolicy {
  return uniform(ep, false);
}

function uniform(ep: LocalEndpoint, isolated: boolean): EndpointPolicy {
  const out: EndpointPolicy = {
    family: ep.family,
    address: ep.address,
    ingress: { isolated, rules: [] },
    egress: { isolated, rules: [] },
  };
  if (ep.namespace && ep.name) out.pod = `${ep.namespace}/${ep.name}`;
  return out;
}

// Sources hand over the same policy objects until they change (the watches
// cache conversions by identity, the directory re-reads only changed files),
// so validation runs once per object, not once per compile: an ADD's
// one-endpoint compile must not re-validate a thousand policies.
const parseCache = new WeakMap<object, { parsed: ParsedPolicy; problems: PolicyProblem[] }>();
function parseCached(np: NetworkPolicy, problems: PolicyProblem[]): ParsedPolicy {
  let hit = parseCache.get(np);
  if (!hit) {
    const own: PolicyProblem[] = [];
    hit = { parsed: parsePolicy(np, own), problems: own };
    parseCache.set(np, hit);
  }
  problems.push(...hit.problems);
  return hit.parsed;
}

export interface CompilerOptions {
  /**
   * The source's pods are the cluster's own (the Kubernetes watches): a named
   * local endpoint whose Pod is not in the snapshot (yet) is unknown, not
   * unlabelled. It compiles to default deny both ways and is no policy's peer
   * until its Pod arrives. Without it (a policy directory) such an endpoint is
   * a pod without labels, as documented for directories.
   */
  podsAuthoritative?: boolean;
}

export interface CompileOptions extends CompilerOptions {
  /** Compile only these local endpoints (by address); the others still count as peers. */
  only?: ReadonlySet<string>;
}

/** Work done since the compiler was made (tests and benches: "a change costs what it touches"). */
export interface CompilerWork {
  /** Policies whose peers were resolved against the cluster. */
  policiesResolved: number;
  /** Compiled directions built (each one normalized). */
  directions: number;
  /** Endpoints whose policy was compiled (built, or taken from a shared direction). */
  endpoints: number;
}

interface EndpointState {
  ep: LocalEndpoint;
  /** Its pod in the cluster; undefined: no pod names, or unknown (see podsAuthoritative). */
  pod: Pod | undefined;
  unknown: boolean;
  /** The policies selecting it, by id. */
  selecting: CompiledPolicy[];
  ingKey: string;
  egrKey: string;
  result: EndpointPolicy | undefined;
  ingressProblems: PolicyProblem[];
}

interface SnapPod {
  source: PolicyPod;
  pod: Pod;
}

const NO_LABELS: Record<string, string> = {};

function podOf(p: PolicyPod): Pod {
  return {
    namespace: p.namespace,
    name: p.name,
    labels: p.labels ?? NO_LABELS,
    ips: p.ips.filter((i) => i.family === 'ipv4').map((i) => parseIpv4(i.address)).filter((n): n is number => n !== undefined),
    namedPorts: p.namedPorts ?? [],
  };
}

function sameLocal(a: LocalEndpoint, b: LocalEndpoint): boolean {
  return a.family === b.family && a.address === b.address && a.namespace === b.namespace && a.name === b.name;
}

function podText(p: Pod | undefined): string {
  return p === undefined ? '' : JSON.stringify([p.labels, p.ips, p.namedPorts]);
}

function sameAddressing(a: Pod, b: Pod): boolean {
  return a.ips.length === b.ips.length && a.ips.every((ip, i) => ip === b.ips[i]) && JSON.stringify(a.namedPorts) === JSON.stringify(b.namedPorts);
}

/**
 * The policy compiler, kept across changes. `update(snapshot, locals)` brings
 * it to a new snapshot and endpoint list and does only the work the
 * difference asks for; `result()` reads the compiled policy of every local
 * endpoint. The state it keeps is a cache of the pure function
 * (snapshot, locals) → result: a fresh compiler given the same input
 * (compilePolicies) gives the same result, byte for byte.
 *
 * What a change costs:
 *  - a policy added, updated (a new object) or deleted: that policy's peers
 *    are resolved, the endpoints of its namespace re-matched against the
 *    policies there (label tests, no peers), and the directions of the
 *    endpoints it selects (before or after) rebuilt;
 *  - a pod's labels, IPs or named ports: every policy with a selector peer
 *    matching the old or the new pod (or whose egress named ports depend on
 *    every pod) re-resolves its peers, and the directions made of those
 *    policies are rebuilt; if it is a local endpoint's pod, that endpoint is
 *    re-matched. A pod update that changes none of these (status, other
 *    fields) costs a comparison;
 *  - a namespace's labels: every policy with a namespace selector telling
 *    the old labels from the new, likewise.
 * Policies are told apart by object identity (the sources keep an object
 * until it changes), pods and namespaces by name and content. Rules whose
 * peers are written alike in one namespace (common: many policies admit the
 * same tier or team) are resolved once per update and share one peer list,
 * so a pod that is a peer of many policies costs one resolution per distinct
 * rule, and their directions' unions skip the duplicate lists.
 */
export class PolicyCompiler {
  private readonly authoritative: boolean;
  private nextId = 1;
  private snap: PolicySnapshot | undefined;
  /** Every policy object of the snapshot → its compiled form (undefined: invalid) and its validation problems. */
  private policies = new Map<NetworkPolicy, { cp: CompiledPolicy | undefined; problems: PolicyProblem[] }>();
  private policiesByNs = new Map<string, CompiledPolicy[]>();
  private nsLabelsMap = new Map<string, { source: PolicyNamespace; labels: Record<string, string>; text: string }>();
  private snapPods = new Map<string, SnapPod>();
  private locals: LocalEndpoint[] = [];
  /** Pod key → the addresses of its local endpoints. */
  private localsByPod = new Map<string, number[]>();
  /** The cluster's pods: the snapshot's plus the local endpoints' addresses. */
  private readonly pods = new Map<string, Pod>();
  private readonly podsByNs = new Map<string, Map<string, Pod>>();
  private readonly hostPeers = new Map<number, InternalPeer>();
  private readonly resolvedPeers = new Map<string, InternalPeer[]>();
  private readonly endpointStates = new Map<string, EndpointState>();
  private readonly ingressMemo = new Map<string, DirectionPolicy>();
  private readonly egressMemo = new Map<string, DirectionPolicy>();
  private readonly cluster: Cluster;
  readonly work: CompilerWork = { policiesResolved: 0, directions: 0, endpoints: 0 };

  constructor(opts: CompilerOptions = {}) {
    this.authoritative = opts.podsAuthoritative === true;
    const work = this.work;
    const pods = this.pods;
    this.cluster = {
      pods: () => pods.values(),
      podsByNs: this.podsByNs,
      nsLabels: (ns) => this.nsLabels(ns),
      hostPeer: (ip) => {
        let p = this.hostPeers.get(ip);
        if (!p) this.hostPeers.set(ip, (p = { cidr: hostCidr4(ip), except: [] }));
        return p;
      },
      podPeers: (pod) => (pod.peers ??= pod.ips.map((ip) => this.cluster.hostPeer(ip))),
      peerLists: new PeerLists(),
      peersOf: (key, resolve) => {
        let p = this.resolvedPeers.get(key);
        if (!p) this.resolvedPeers.set(key, (p = resolve()));
        return p;
      },
      resolved: () => void work.policiesResolved++,
    };
  }

  private nsLabels(ns: string): Record<string, string> {
    return this.nsLabelsMap.get(ns)?.labels ?? { [NAMESPACE_NAME_LABEL]: ns };
  }

  /** Bring the compiler to this snapshot and these local endpoints (in the order results are wanted). */
  update(snap: PolicySnapshot, locals: LocalEndpoint[]): this {
    // Peer lists are shared among the rules resolved after one update (most
    // are resolved then, against one cluster); older lists are not kept alive for it.
    this.cluster.peerLists.clear();
    this.resolvedPeers.clear();
    const prev = this.snap;
    this.snap = snap;
    // Policies, by object (a collection handed over as the same array is unchanged: the Kubernetes source does that).
    const changedPolicyNs = new Set<string>();
    const policies = prev && prev.policies === snap.policies ? this.policies : new Map<NetworkPolicy, { cp: CompiledPolicy | undefined; problems: PolicyProblem[] }>();
    for (const np of policies === this.policies ? [] : snap.policies) {
      let e = policies.get(np) ?? this.policies.get(np);
      if (!e) {
        const problems: PolicyProblem[] = [];
        const parsed = parseCached(np, problems);
        e = { cp: new CompiledPolicy(this.nextId++, parsed, this.cluster), problems };
        changedPolicyNs.add(parsed.namespace);
      }
      policies.set(np, e);
    }
    for (const [np, e] of this.policies) if (e.cp && !policies.has(np)) changedPolicyNs.add(e.cp.parsed.namespace);
    this.policies = policies;
    if (changedPolicyNs.size > 0) {
      this.policiesByNs.clear();
      for (const { cp } of policies.values()) {
        if (!cp) continue;
        let l = this.policiesByNs.get(cp.parsed.namespace);
        if (!l) this.policiesByNs.set(cp.parsed.namespace, (l = []));
        l.push(cp);
      }
      for (const l of this.policiesByNs.values()) l.sort((a, b) => a.id - b.id);
    }
    const live = [...policies.values()].map((e) => e.cp).filter((cp): cp is CompiledPolicy => cp !== undefined && cp.resolved);
    const invalidate = (pred: (cp: CompiledPolicy) => boolean): void => {
      for (let i = 0; i < live.length; ) {
        if (pred(live[i]!)) {
          live[i]!.invalidate();
          live[i] = live[live.length - 1]!;
          live.pop();
        } else {
          i++;
        }
      }
    };

    // Namespaces, by name and labels.
    const oldNs = this.nsLabelsMap;
    const sameNs = prev !== undefined && prev.namespaces === snap.namespaces;
    const nsNext = sameNs ? oldNs : new Map<string, { source: PolicyNamespace; labels: Record<string, string>; text: string }>();
    for (const ns of sameNs ? [] : snap.namespaces) {
      const prev = oldNs.get(ns.name);
      if (prev && prev.source === ns) {
        nsNext.set(ns.name, prev);
        continue;
      }
      const labels = { ...ns.labels, [NAMESPACE_NAME_LABEL]: ns.name };
      nsNext.set(ns.name, { source: ns, labels, text: JSON.stringify(labels) });
    }
    this.nsLabelsMap = nsNext;
    const oldNsLabels = (ns: string): Record<string, string> => oldNs.get(ns)?.labels ?? { [NAMESPACE_NAME_LABEL]: ns };
    for (const name of sameNs ? [] : new Set([...oldNs.keys(), ...nsNext.keys()])) {
      const a = oldNs.get(name);
      const b = nsNext.get(name);
      if (a === b || (a && b && a.text === b.text)) continue;
      const before = oldNsLabels(name);
      const after = this.nsLabels(name);
      invalidate((cp) => cp.separatesNamespaces(before, after));
    }

    // Pods: the snapshot's, by key; local endpoints add their addresses.
    const candidates = new Set<string>();
    if (!prev || prev.pods !== snap.pods) {
      const snapPods = new Map<string, SnapPod>();
      for (const p of snap.pods) {
        const key = `${p.namespace}/${p.name}`;
        const was = this.snapPods.get(key);
        const entry = was && was.source === p ? was : { source: p, pod: podOf(p) };
        if (entry !== was) candidates.add(key);
        snapPods.set(key, entry);
      }
      for (const key of this.snapPods.keys()) if (!snapPods.has(key)) candidates.add(key);
      this.snapPods = snapPods;
    }
    const localsByPod = new Map<string, number[]>();
    for (const ep of locals) {
      if (!ep.namespace || !ep.name) continue;
      const ip = parseIpv4(ep.address);
      const key = `${ep.namespace}/${ep.name}`;
      let l = localsByPod.get(key);
      if (!l) localsByPod.set(key, (l = []));
      if (ip !== undefined) l.push(ip);
    }
    for (const [key, ips] of localsByPod) {
      const prev = this.localsByPod.get(key);
      if (!prev || prev.length !== ips.length || prev.some((ip, i) => ip !== ips[i])) candidates.add(key);
    }
    for (const key of this.localsByPod.keys()) if (!localsByPod.has(key)) candidates.add(key);
    this.localsByPod = localsByPod;
    for (const key of candidates) {
      const old = this.pods.get(key);
      const next = this.effectivePod(key);
      if (old === next || (old && next && podText(old) === podText(next))) continue;
      if (old) {
        const m = this.podsByNs.get(old.namespace)!;
        m.delete(key);
        if (m.size === 0) this.podsByNs.delete(old.namespace);
        this.pods.delete(key);
      }
      if (next) {
        this.pods.set(key, next);
        let m = this.podsByNs.get(next.namespace);
        if (!m) this.podsByNs.set(next.namespace, (m = new Map<string, Pod>()));
        m.set(key, next);
      }
      if (live.length > 0) this.podChanged(old, next, oldNsLabels, invalidate);
    }

    // Local endpoints: re-match those whose pod changed or whose namespace's policies did.
    this.locals = locals;
    const present = new Set<string>();
    for (const ep of locals) {
      present.add(ep.address);
      const key = ep.namespace && ep.name ? `${ep.namespace}/${ep.name}` : undefined;
      const pod = key ? this.pods.get(key) : undefined;
      const unknown = key !== undefined && pod === undefined;
      let st = this.endpointStates.get(ep.address);
      const policiesMoved = pod !== undefined && (changedPolicyNs.has(pod.namespace) || changedPolicyNs.has(ANY_NAMESPACE));
      if (!st || !sameLocal(st.ep, ep) || st.pod !== pod || policiesMoved) {
        // A broken policy whose namespace is unreadable (ANY_NAMESPACE) selects in every namespace: fail closed.
        const candidates = pod ? [...(this.policiesByNs.get(pod.namespace) ?? []), ...(this.policiesByNs.get(ANY_NAMESPACE) ?? [])] : [];
        const selecting = candidates.filter((cp) => cp.parsed.select(pod!.labels));
        const fresh: EndpointState = { ep, pod, unknown, selecting, ingKey: '', egrKey: '', result: undefined, ingressProblems: [] };
        this.endpointStates.set(ep.address, (st = fresh));
      }
      const ing = st.selecting.filter((cp) => cp.parsed.ingress);
      const ingKey = ing.map((cp) => `${cp.id}.${cp.rev}`).join(',') + (pod && ing.some((cp) => cp.ingressNamed) ? JSON.stringify(pod.namedPorts) : '');
      const egrKey = st.selecting.filter((cp) => cp.parsed.egress).map((cp) => `${cp.id}.${cp.rev}`).join(',');
      if (ingKey !== st.ingKey || egrKey !== st.egrKey) {
        st.ingKey = ingKey;
        st.egrKey = egrKey;
        st.result = undefined;
      }
    }
    for (const addr of this.endpointStates.keys()) if (!present.has(addr)) this.endpointStates.delete(addr);
    // Directions no endpoint uses any more.
    const ingKeys = new Set<string>();
    const egrKeys = new Set<string>();
    for (const st of this.endpointStates.values()) {
      ingKeys.add(st.ingKey);
      egrKeys.add(st.egrKey);
    }
    for (const k of this.ingressMemo.keys()) if (!ingKeys.has(k)) this.ingressMemo.delete(k);
    for (const k of this.egressMemo.keys()) if (!egrKeys.has(k)) this.egressMemo.delete(k);
    // Pod peers are shared per address; forget those of addresses long gone.
    if (this.hostPeers.size > 2 * this.pods.size + 1024) this.hostPeers.clear();
    return this;
  }

  /** A pod as the cluster holds it: the snapshot's Pod plus its local endpoints' addresses. */
  private effectivePod(key: string): Pod | undefined {
    const base = this.snapPods.get(key)?.pod;
    const ips = this.localsByPod.get(key);
    if (!ips) return base;
    // A local endpoint whose Pod the cluster has not shown yet: unknown (authoritative source) or unlabelled (directory).
    if (!base && this.authoritative) return undefined;
    const slash = key.indexOf('/');
    const pod: Pod = base ?? { namespace: key.slice(0, slash), name: key.slice(slash + 1), labels: NO_LABELS, ips: [], namedPorts: [] };
    const extra = ips.filter((ip) => !pod.ips.includes(ip));
    return extra.length === 0 ? pod : { ...pod, ips: [...pod.ips, ...extra], peers: undefined };
  }

  /** Drop the resolved peers of every policy a pod change moves. */
  private podChanged(
    old: Pod | undefined,
    next: Pod | undefined,
    oldNsLabels: (ns: string) => Record<string, string>,
    invalidate: (pred: (cp: CompiledPolicy) => boolean) => void,
  ): void {
    const o = old && old.ips.length > 0 ? old : undefined;
    const n = next && next.ips.length > 0 ? next : undefined;
    if (!o && !n) return; // a pod without addresses is nobody's peer
    // Same addresses and ports: only a selector whose answer flips matters.
    const onlyLabels = o !== undefined && n !== undefined && sameAddressing(o, n);
    const oNs = o ? oldNsLabels(o.namespace) : undefined;
    const nNs = n ? this.nsLabels(n.namespace) : undefined;
    invalidate((cp) => {
      if (cp.podWide && !onlyLabels) return true;
      for (const rules of [cp.parsed.ingressRules, cp.parsed.egressRules]) {
        for (const r of rules) {
          for (const sp of r.selectorPeers) {
            const mo = o !== undefined && (sp.ns ? sp.ns(oNs!) : o.namespace === cp.parsed.namespace) && (!sp.pod || sp.pod(o.labels));
            const mn = n !== undefined && (sp.ns ? sp.ns(nNs!) : n.namespace === cp.parsed.namespace) && (!sp.pod || sp.pod(n.labels));
            if (onlyLabels ? mo !== mn : mo || mn) return true;
          }
        }
      }
      return false;
    });
  }

  /** The compiled policy of one local endpoint (undefined: not a local endpoint). */
  endpoint(address: string): EndpointPolicy | undefined {
    const st = this.endpointStates.get(address);
    return st ? this.compileEndpoint(st) : undefined;
  }

  private compileEndpoint(st: EndpointState): EndpointPolicy {
    if (st.result) return st.result;
    this.work.endpoints++;
    const { ep, pod } = st;
    if (st.unknown) {
      // Fail closed: nothing is known of this pod's labels, so nothing may be assumed allowed.
      st.ingressProblems = [];
      return (st.result = defaultDeny(ep));
    }
    const ing = st.selecting.filter((cp) => cp.parsed.ingress);
    const egr = st.selecting.filter((cp) => cp.parsed.egress);
    let ingress = this.ingressMemo.get(st.ingKey);
    if (!ingress) {
      this.work.directions++;
      this.ingressMemo.set(st.ingKey, (ingress = direction(ing.length > 0, ing.flatMap((cp) => ingressAtoms(cp, pod)))));
    }
    let egress = this.egressMemo.get(st.egrKey);
    if (!egress) {
      this.work.directions++;
      this.egressMemo.set(st.egrKey, (egress = direction(egr.length > 0, egr.flatMap((cp) => egressAtoms(cp, this.cluster)))));
    }
    const problems: PolicyProblem[] = [];
    if (pod) for (const cp of ing) if (cp.ingressNamed) checkIngressNamed(cp, pod, problems);
    st.ingressProblems = problems;
    const out: EndpointPolicy = { family: ep.family, address: ep.address, ingress, egress };
    if (pod) out.pod = `${pod.namespace}/${pod.name}`;
    return (st.result = out);
  }

  /** Every local endpoint's compiled policy (or only some), the policies selecting each, problems and counts. */
  result(only?: ReadonlySet<string>): CompileResult {
    const snap = this.snap ?? { policies: [], namespaces: [], pods: [] };
    const problems: PolicyProblem[] = [];
    let selectors = 0;
    let validPolicies = 0;
    for (const np of snap.policies) {
      const e = this.policies.get(np)!;
      problems.push(...e.problems);
      if (e.cp) {
        if (!e.cp.parsed.broken) validPolicies++;
        selectors += e.cp.parsed.selectorCount;
      }
    }
    const endpoints: EndpointPolicy[] = [];
    const selectedBy = new Map<string, string[]>();
    const egressUsed = new Set<CompiledPolicy>();
    let rules = 0;
    let peers = 0;
    for (const ep of this.locals) {
      if (only && !only.has(ep.address)) continue;
      const st = this.endpointStates.get(ep.address)!;
      const out = this.compileEndpoint(st);
      endpoints.push(out);
      selectedBy.set(ep.address, st.unknown ? [] : st.selecting.map((cp) => cp.parsed.key).sort());
      problems.push(...st.ingressProblems);
      if (!st.unknown) for (const cp of st.selecting) if (cp.parsed.egress) egressUsed.add(cp);
      for (const d of [out.ingress, out.egress]) {
        rules += d.rules.length;
        for (const r of d.rules) peers += r.peers?.length ?? 0;
      }
    }
    for (const cp of egressUsed) problems.push(...cp.egressProblems);
    return {
      endpoints,
      selectedBy,
      problems: dedupeProblems(problems),
      stats: { policies: snap.policies.length, validPolicies, selectors, rules, peers },
    };
  }
}

/** A compile from scratch: what PolicyCompiler must equal after any sequence of updates. */
export function compilePolicies(snap: PolicySnapshot, locals: LocalEndpoint[], opts: CompileOptions = {}): CompileResult {
  return new PolicyCompiler(opts).update(snap, locals).result(opts.only);
}
