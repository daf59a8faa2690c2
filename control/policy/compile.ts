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
import { parsePolicy, type NamedPort, type ParsedPolicy, type ParsedRule } from './parse.js';
import type { DirectionPolicy, EndpointPolicy, IpFamily, L4Protocol, PolicyProblem, PolicySnapshot, PortRange } from './types.js';

/** A pod endpoint on this node, as the agent knows it (CNI_ARGS K8S_POD_NAMESPACE/K8S_POD_NAME). */
export interface LocalEndpoint {
  family: IpFamily;
  address: string;
  namespace?: string;
  name?: string;
}

export interface CompileStats {
  /** Policies in the snapshot, and those compiled (the rest had a fatal problem). */
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
  /** One per local endpoint, in the order given. */
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
  return { pods, podsByNs, podByKey, nsLabels };
}

/** A rule with its peers resolved against the cluster (independent of the local endpoint). */
interface ResolvedRule {
  rule: ParsedRule;
  /** null: every address. */
  peers: InternalPeer[] | null;
  /** Pods among the peers (for egress named ports): pod and the peer addresses it owns. */
  peerPods: () => Array<{ pod: Pod; ips: number[] }>;
}

function resolveRule(rule: ParsedRule, policyNs: string, c: Cluster): ResolvedRule {
  if (rule.all) {
    return { rule, peers: null, peerPods: () => c.pods.filter((p) => p.ips.length > 0).map((pod) => ({ pod, ips: pod.ips })) };
  }
  const selected = new Set<Pod>();
  for (const sp of rule.selectorPeers) {
    const nsNames = sp.ns ? [...c.nsLabels].filter(([, l]) => sp.ns!(l)).map(([n]) => n) : [policyNs];
    for (const ns of nsNames) {
      for (const pod of c.podsByNs.get(ns) ?? []) if (!sp.pod || sp.pod(pod.labels)) selected.add(pod);
    }
  }
  const peers: InternalPeer[] = rule.ipBlocks.map((b) => ({ cidr: b.cidr, except: b.except }));
  for (const pod of selected) for (const ip of pod.ips) peers.push({ cidr: hostCidr4(ip), except: [] });
  const inBlocks = (ip: number): boolean =>
    rule.ipBlocks.some((b) => cidrContainsIp(b.cidr, ip) && !b.except.some((e) => cidrContainsIp(e, ip)));
  return {
    rule,
    peers,
    peerPods: () => {
      const out: Array<{ pod: Pod; ips: number[] }> = [];
      for (const pod of c.pods) {
        const ips = selected.has(pod) ? pod.ips : pod.ips.filter(inBlocks);
        if (ips.length > 0) out.push({ pod, ips });
      }
      return out;
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
  parsed: ParsedPolicy;
  ingress: ResolvedRule[];
  egress: ResolvedRule[];
  /** Problems already reported for egress named ports (once per compile, not per endpoint). */
  egressNamedChecked: boolean;
}

function ingressAtoms(cp: CompiledPolicy, pod: Pod | undefined, problems: PolicyProblem[]): RuleAtom[] {
  const out: RuleAtom[] = [];
  cp.ingress.forEach((rr) => {
    const { ports } = rr.rule;
    if (ports === null) {
      out.push({ peers: rr.peers, ports: null, sources: [cp.parsed.key] });
      return;
    }
    const resolved = resolveNamed(ports.named, pod);
    for (const n of ports.named) {
      if (resolveNamed([n], pod).length === 0) {
        problems.push({
          policy: cp.parsed.key,
          message: `named port ${namedText(n)} is not a container port of pod ${pod ? `${pod.namespace}/${pod.name}` : '(unknown)'}: it allows nothing there`,
        });
      }
    }
    out.push({ peers: rr.peers, ports: [...ports.ranges, ...resolved], sources: [cp.parsed.key] });
  });
  return out;
}

function egressAtoms(cp: CompiledPolicy, problems: PolicyProblem[]): RuleAtom[] {
  const out: RuleAtom[] = [];
  for (const rr of cp.egress) {
    const { ports } = rr.rule;
    if (ports === null) {
      out.push({ peers: rr.peers, ports: null, sources: [cp.parsed.key] });
      continue;
    }
    if (ports.ranges.length > 0) out.push({ peers: rr.peers, ports: ports.ranges, sources: [cp.parsed.key] });
    if (ports.named.length === 0) continue;
    // Named ports are the destination's: one rule per peer pod that has them.
    const seen = new Set<string>();
    for (const { pod, ips } of rr.peerPods()) {
      const resolved = resolveNamed(ports.named, pod);
      if (resolved.length === 0) continue;
      for (const n of ports.named) if (resolveNamed([n], pod).length > 0) seen.add(namedText(n));
      out.push({ peers: ips.map((ip) => ({ cidr: hostCidr4(ip), except: [] })), ports: resolved, sources: [cp.parsed.key] });
    }
    if (!cp.egressNamedChecked) {
      for (const n of ports.named) {
        if (!seen.has(namedText(n))) {
          problems.push({ policy: cp.parsed.key, message: `named port ${namedText(n)} is not a container port of any peer pod: it allows nothing` });
        }
      }
    }
  }
  cp.egressNamedChecked = true;
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
  const out: EndpointPolicy = {
    family: ep.family,
    address: ep.address,
    ingress: { isolated: true, rules: [] },
    egress: { isolated: true, rules: [] },
  };
  if (ep.namespace && ep.name) out.pod = `${ep.namespace}/${ep.name}`;
  return out;
}

export function compilePolicies(snap: PolicySnapshot, locals: LocalEndpoint[]): CompileResult {
  const problems: PolicyProblem[] = [];
  const cluster = buildCluster(snap, locals);
  const compiled: CompiledPolicy[] = [];
  let selectors = 0;
  for (const np of snap.policies) {
    const parsed = parsePolicy(np, problems);
    if (!parsed) continue;
    selectors += parsed.selectorCount;
    compiled.push({
      parsed,
      ingress: parsed.ingressRules.map((r) => resolveRule(r, parsed.namespace, cluster)),
      egress: parsed.egressRules.map((r) => resolveRule(r, parsed.namespace, cluster)),
      egressNamedChecked: false,
    });
  }
  const byNs = new Map<string, CompiledPolicy[]>();
  for (const cp of compiled) {
    let l = byNs.get(cp.parsed.namespace);
    if (!l) byNs.set(cp.parsed.namespace, (l = []));
    l.push(cp);
  }
  // Replicas (same namespace, labels and named ports) compile alike: compile once.
  const memo = new Map<string, { ingress: DirectionPolicy; egress: DirectionPolicy; selectedBy: string[] }>();
  const endpoints: EndpointPolicy[] = [];
  const selectedBy = new Map<string, string[]>();
  let rules = 0;
  let peers = 0;
  for (const ep of locals) {
    const pod = ep.namespace && ep.name ? cluster.podByKey.get(`${ep.namespace}/${ep.name}`) : undefined;
    const memoKey = pod ? JSON.stringify([pod.namespace, pod.labels, pod.namedPorts]) : '';
    let c = memo.get(memoKey);
    if (!c) {
      const selecting = pod ? (byNs.get(pod.namespace) ?? []).filter((cp) => cp.parsed.select(pod.labels)) : [];
      const ing = selecting.filter((cp) => cp.parsed.ingress);
      const egr = selecting.filter((cp) => cp.parsed.egress);
      c = {
        ingress: direction(ing.length > 0, ing.flatMap((cp) => ingressAtoms(cp, pod, problems))),
        egress: direction(egr.length > 0, egr.flatMap((cp) => egressAtoms(cp, problems))),
        selectedBy: selecting.map((cp) => cp.parsed.key).sort(),
      };
      memo.set(memoKey, c);
    }
    const out: EndpointPolicy = { family: ep.family, address: ep.address, ingress: c.ingress, egress: c.egress };
    if (pod) out.pod = `${pod.namespace}/${pod.name}`;
    endpoints.push(out);
    selectedBy.set(ep.address, c.selectedBy);
    for (const d of [c.ingress, c.egress]) {
      rules += d.rules.length;
      for (const r of d.rules) peers += r.peers?.length ?? 0;
    }
  }
  return {
    endpoints,
    selectedBy,
    problems: dedupeProblems(problems),
    stats: { policies: snap.policies.length, validPolicies: compiled.length, selectors, rules, peers },
  };
}
