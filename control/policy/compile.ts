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
import { normalizeRules, type InternalPeer, type RuleAtom } from './normalize.js';
import { ANY_NAMESPACE, parsePolicy, type NamedPort, type ParsedPolicy, type ParsedRule } from './parse.js';
import type { DirectionPolicy, EndpointPolicy, IpFamily, L4Protocol, NetworkPolicy, PolicyProblem, PolicySnapshot, PortRange } from './types.js';

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
}

interface Cluster {
  pods: Pod[];
  podsByNs: Map<string, Pod[]>;
  podByKey: Map<string, Pod>;
  nsLabels: Map<string, Record<string, string>>;
  /** One peer object per pod address, shared by every rule naming it. */
  hostPeer: (ip: number) => InternalPeer;
}

/** Pods of the snapshot plus the local endpoints (a local pod without a Pod object gets no labels). */
function buildCluster(snap: PolicySnapshot, locals: LocalEndpoint[]): Cluster {
  const podByKey = new Map<string, Pod>();
  for (const p of snap.pods) {
    const ips = p.ips.filter((i) => i.family === 'ipv4').map((i) => parseIpv4(i.address)).filter((n): n is number => n !== undefined);
    podByKey.set(`${p.namespace}/${p.name}`, {
      namespace: p.namespace,
      name: p.name,
      labels: p.labels ?? {},
      ips,
      namedPorts: p.namedPorts ?? [],
    });
  }
  for (const ep of locals) {
    if (!ep.namespace || !ep.name) continue;
    const ip = parseIpv4(ep.address);
    const key = `${ep.namespace}/${ep.name}`;
    let pod = podByKey.get(key);
    if (!pod) podByKey.set(key, (pod = { namespace: ep.namespace, name: ep.name, labels: {}, ips: [], namedPorts: [] }));
    if (ip !== undefined && !pod.ips.includes(ip)) pod.ips = [...pod.ips, ip];
  }
  const pods = [...podByKey.values()];
  const podsByNs = new Map<string, Pod[]>();
  const nsLabels = new Map<string, Record<string, string>>();
  for (const ns of snap.namespaces) nsLabels.set(ns.name, { ...ns.labels, [NAMESPACE_NAME_LABEL]: ns.name });
  for (const p of pods) {
    let l = podsByNs.get(p.namespace);
    if (!l) podsByNs.set(p.namespace, (l = []));
    l.push(p);
    if (!nsLabels.has(p.namespace)) nsLabels.set(p.namespace, { [NAMESPACE_NAME_LABEL]: p.namespace });
  }
  const hostPeers = new Map<number, InternalPeer>();
  const hostPeer = (ip: number): InternalPeer => {
    let p = hostPeers.get(ip);
    if (!p) hostPeers.set(ip, (p = { cidr: hostCidr4(ip), except: [] }));
    return p;
  };
  return { pods, podsByNs, podByKey, nsLabels, hostPeer };
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
        for (const pod of c.pods) if (pod.ips.length > 0) fn(pod, pod.ips);
      },
    };
  }
  const selected = new Set<Pod>();
  for (const sp of rule.selectorPeers) {
    const nsNames = sp.ns ? [...c.nsLabels].filter(([, l]) => sp.ns!(l)).map(([n]) => n) : [policyNs];
    for (const ns of nsNames) {
      for (const pod of c.podsByNs.get(ns) ?? []) if (!sp.pod || sp.pod(pod.labels)) selected.add(pod);
    }
  }
  const peers: InternalPeer[] = rule.ipBlocks.map((b) => ({ cidr: b.cidr, except: b.except }));
  for (const pod of selected) for (const ip of pod.ips) peers.push(c.hostPeer(ip));
  const inBlocks = (ip: number): boolean =>
    rule.ipBlocks.some((b) => cidrContainsIp(b.cidr, ip) && !b.except.some((e) => cidrContainsIp(e, ip)));
  return {
    rule,
    peers,
    forEachPeerPod: (fn) => {
      for (const pod of c.pods) {
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

interface CompiledPolicy {
  /** Position in the snapshot: memo keys name policies by it. */
  index: number;
  parsed: ParsedPolicy;
  ingress: ResolvedRule[];
  egress: ResolvedRule[];
  /** The policy's egress atoms: they do not depend on the local endpoint. */
  egressAtoms?: RuleAtom[];
  /** Some ingress rule names a port: the local pod's ports matter. */
  ingressNamed: boolean;
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

function egressAtoms(cp: CompiledPolicy, c: Cluster, problems: PolicyProblem[]): RuleAtom[] {
  if (cp.egressAtoms) return cp.egressAtoms;
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

export interface CompileOptions {
  /** Compile only these local endpoints (by address); the others still count as peers. */
  only?: ReadonlySet<string>;
}

export function compilePolicies(snap: PolicySnapshot, locals: LocalEndpoint[], opts: CompileOptions = {}): CompileResult {
  const problems: PolicyProblem[] = [];
  const cluster = buildCluster(snap, locals);
  const compiled: CompiledPolicy[] = [];
  let selectors = 0;
  snap.policies.forEach((np, index) => {
    const parsed = parseCached(np, problems);
    selectors += parsed.selectorCount;
    compiled.push({
      index,
      parsed,
      // Peers are resolved on first use: a compile for one endpoint resolves only the policies selecting it.
      get ingress() {
        const v = parsed.ingressRules.map((r) => resolveRule(r, parsed.namespace, cluster));
        Object.defineProperty(this, 'ingress', { value: v });
        return v;
      },
      get egress() {
        const v = parsed.egressRules.map((r) => resolveRule(r, parsed.namespace, cluster));
        Object.defineProperty(this, 'egress', { value: v });
        return v;
      },
      ingressNamed: parsed.ingressRules.some((r) => (r.ports?.named.length ?? 0) > 0),
    });
  });
  const byNs = new Map<string, CompiledPolicy[]>();
  for (const cp of compiled) {
    let l = byNs.get(cp.parsed.namespace);
    if (!l) byNs.set(cp.parsed.namespace, (l = []));
    l.push(cp);
  }
  // A direction's rules depend only on the policies selecting the pod for it
  // (and, for ingress named ports, on the pod's ports): pods selected alike
  // share one compiled direction.
  const ingressMemo = new Map<string, DirectionPolicy>();
  const egressMemo = new Map<string, DirectionPolicy>();
  const endpoints: EndpointPolicy[] = [];
  const selectedBy = new Map<string, string[]>();
  let rules = 0;
  let peers = 0;
  for (const ep of locals) {
    if (opts.only && !opts.only.has(ep.address)) continue;
    const pod = ep.namespace && ep.name ? cluster.podByKey.get(`${ep.namespace}/${ep.name}`) : undefined;
    // A broken policy whose namespace is unreadable (ANY_NAMESPACE) selects in every namespace: fail closed.
    const candidates = pod ? [...(byNs.get(pod.namespace) ?? []), ...(byNs.get(ANY_NAMESPACE) ?? [])] : [];
    const selecting = candidates.filter((cp) => cp.parsed.select(pod!.labels));
    const ing = selecting.filter((cp) => cp.parsed.ingress);
    const egr = selecting.filter((cp) => cp.parsed.egress);
    const ingKey = ing.map((cp) => cp.index).join(',') + (pod && ing.some((cp) => cp.ingressNamed) ? JSON.stringify(pod.namedPorts) : '');
    let ingress = ingressMemo.get(ingKey);
    if (!ingress) ingressMemo.set(ingKey, (ingress = direction(ing.length > 0, ing.flatMap((cp) => ingressAtoms(cp, pod)))));
    const egrKey = egr.map((cp) => cp.index).join(',');
    let egress = egressMemo.get(egrKey);
    if (!egress) egressMemo.set(egrKey, (egress = direction(egr.length > 0, egr.flatMap((cp) => egressAtoms(cp, cluster, problems)))));
    if (pod) for (const cp of ing) if (cp.ingressNamed) checkIngressNamed(cp, pod, problems);
    const out: EndpointPolicy = { family: ep.family, address: ep.address, ingress, egress };
    if (pod) out.pod = `${pod.namespace}/${pod.name}`;
    endpoints.push(out);
    selectedBy.set(ep.address, selecting.map((cp) => cp.parsed.key).sort());
    for (const d of [ingress, egress]) {
      rules += d.rules.length;
      for (const r of d.rules) peers += r.peers?.length ?? 0;
    }
  }
  return {
    endpoints,
    selectedBy,
    problems: dedupeProblems(problems),
    stats: { policies: snap.policies.length, validPolicies: compiled.filter((cp) => !cp.parsed.broken).length, selectors, rules, peers },
  };
}
