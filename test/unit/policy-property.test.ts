// Random valid policies × random flows: the compiled EndpointPolicy (read with
// policyAllows) must give the verdict of a reference evaluator that states
// the API semantics directly, policy by policy, on the flow itself (no
// compilation, no normalization, its own selector and CIDR code). Bounded:
// fixed seeds, fixed counts, a small label and address universe so that
// selectors, excepts and named ports collide often.
import t from 'tap';
import { compilePolicies, type LocalEndpoint } from '../../control/policy/compile.js';
import { policyAllows, type PolicyFlow } from '../../control/policy/evaluate.js';
import type {
  L4Protocol,
  LabelSelector,
  NetworkPolicy,
  NetworkPolicyPeer,
  NetworkPolicyPort,
  PolicyNamespace,
  PolicyPod,
  PolicySnapshot,
} from '../../control/policy/types.js';
import { Rng } from '../faults/helpers/scale.js';

const SEEDS = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89];
const WORLDS_PER_SEED = 40;
const FLOWS_PER_WORLD = 300;



const NS = ['x', 'y', 'z'];
const KEYS = ['app', 'tier'];
const VALUES = ['a', 'b', 'c'];
const PROTOS: L4Protocol[] = ['TCP', 'UDP', 'SCTP'];
const NAMED = [
  { name: 'http', protocol: 'TCP' as const, ports: [80, 8080] },
  { name: 'dns', protocol: 'UDP' as const, ports: [53] },
  { name: 'dns', protocol: 'TCP' as const, ports: [53] },
  { name: 'assoc', protocol: 'SCTP' as const, ports: [7777, 80] },
];
const PORTS = [53, 80, 81, 443, 7777, 8080];
// 10.0.0.0/27 for pods; a few outside addresses.
const EXTERNAL = ['10.0.0.40', '10.0.1.3', '192.168.7.7', '8.8.8.8'];
const CIDRS = ['10.0.0.0/24', '10.0.0.0/27', '10.0.0.0/28', '10.0.0.16/28', '10.0.0.8/29', '0.0.0.0/0', '10.0.0.0/8', '192.168.0.0/16'];
const EXCEPTS = ['10.0.0.0/30', '10.0.0.4/30', '10.0.0.8/31', '10.0.0.16/29', '10.0.0.20/32', '10.0.0.12/30'];

function labels(r: Rng): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of KEYS) if (r.chance(0.6)) out[k] = r.pick(VALUES);
  return out;
}

function selector(r: Rng): LabelSelector {
  const sel: LabelSelector = {};
  if (r.chance(0.5)) {
    sel.matchLabels = {};
    for (const k of KEYS) if (r.chance(0.4)) sel.matchLabels[k] = r.pick(VALUES);
  }
  if (r.chance(0.4)) {
    sel.matchExpressions = r.some(KEYS, 2).map((key) => {
      const operator = r.pick(['In', 'NotIn', 'Exists', 'DoesNotExist'] as const);
      return operator === 'In' || operator === 'NotIn' ? { key, operator, values: [r.pick(VALUES), r.pick(VALUES)] } : { key, operator };
    });
  }
  return sel;
}

function cidrIn(cidr: string, except: string[]): { cidr: string; except: string[] } {
  // Keep only excepts strictly inside (the API would reject the others).
  const [b, l] = cidr.split('/') as [string, string];
  return {
    cidr,
    except: except.filter((e) => {
      const [eb, el] = e.split('/') as [string, string];
      return Number(el) > Number(l) && inCidr(eb, b, Number(l));
    }),
  };
}

function peer(r: Rng): NetworkPolicyPeer {
  switch (r.int(4)) {
    case 0:
      return { podSelector: selector(r) };
    case 1:
      return { namespaceSelector: selector(r) };
    case 2:
      return { podSelector: selector(r), namespaceSelector: selector(r) };
    default:
      return { ipBlock: cidrIn(r.pick(CIDRS), r.some(EXCEPTS, 2)) };
  }
}

function port(r: Rng): NetworkPolicyPort {
  const p: NetworkPolicyPort = {};
  if (r.chance(0.8)) p.protocol = r.pick(PROTOS);
  const k = r.int(4);
  if (k === 0) p.port = r.pick(NAMED).name;
  else if (k === 1) {
    p.port = r.pick(PORTS);
    if (r.chance(0.5)) p.endPort = p.port + r.int(400);
  } else if (k === 2) p.port = r.pick(PORTS);
  return p;
}

function policy(r: Rng, i: number): NetworkPolicy {
  const spec: NetworkPolicy['spec'] = { podSelector: selector(r) };
  if (r.chance(0.8)) spec.ingress = Array.from({ length: r.int(3) }, () => ({ ...(r.chance(0.8) ? { from: r.some([0, 1, 2], 3).map(() => peer(r)) } : {}), ...(r.chance(0.6) ? { ports: r.some([0], 3).map(() => port(r)) } : {}) }));
  if (r.chance(0.6)) spec.egress = Array.from({ length: r.int(3) }, () => ({ ...(r.chance(0.8) ? { to: r.some([0, 1, 2], 3).map(() => peer(r)) } : {}), ...(r.chance(0.6) ? { ports: r.some([0], 3).map(() => port(r)) } : {}) }));
  if (r.chance(0.5)) spec.policyTypes = r.pick([['Ingress'], ['Egress'], ['Ingress', 'Egress']]);
  return { metadata: { namespace: r.pick(NS), name: `p${i}` }, spec };
}

function world(r: Rng): { snap: PolicySnapshot; locals: LocalEndpoint[] } {
  const namespaces: PolicyNamespace[] = NS.filter(() => r.chance(0.8)).map((name) => ({ name, labels: labels(r) }));
  const pods: PolicyPod[] = [];
  const locals: LocalEndpoint[] = [];
  const nPods = 4 + r.int(10);
  for (let i = 0; i < nPods; i++) {
    const namespace = r.pick(NS);
    const address = `10.0.0.${1 + i * 2 + r.int(2)}`;
    const namedPorts = r.some(NAMED, 2).map((n) => ({ name: n.name, protocol: n.protocol, port: r.pick(n.ports) }));
    const isLocal = r.chance(0.6);
    // Some local pods have no Pod object (no labels), some Pod objects no IP (the local endpoint gives it).
    if (!isLocal || r.chance(0.85)) {
      pods.push({ namespace, name: `pod${i}`, labels: labels(r), ips: isLocal && r.chance(0.3) ? [] : [{ family: 'ipv4', address }], namedPorts: isLocal ? namedPorts : namedPorts });
    }
    if (isLocal) locals.push({ family: 'ipv4', address, namespace, name: `pod${i}` });
  }
  const policies = Array.from({ length: r.int(6) }, (_, i) => policy(r, i));
  return { snap: { namespaces, pods, policies }, locals };
}

// ---------------------------------------------------------------------------
// The reference: the API text, evaluated on one flow.
// ---------------------------------------------------------------------------

function ipNum(ip: string): number {
  return ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}
function inCidr(ip: string, base: string, len: number): boolean {
  const size = 2 ** (32 - len);
  return Math.floor(ipNum(ip) / size) === Math.floor(ipNum(base) / size);
}
function inBlock(ip: string, cidr: string): boolean {
  const [b, l] = cidr.split('/') as [string, string];
  return inCidr(ip, b, Number(l));
}

function matches(sel: LabelSelector, l: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (l[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = k(l, e.key);
    if (e.operator === 'In' && !(has && e.values!.includes(l[e.key]!))) return false;
    if (e.operator === 'NotIn' && has && e.values!.includes(l[e.key]!)) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}
function k(l: Record<string, string>, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(l, key);
}

interface RefPod {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  ips: string[];
  namedPorts: PolicyPod['namedPorts'];
}

function refPods(w: { snap: PolicySnapshot; locals: LocalEndpoint[] }): RefPod[] {
  const out: RefPod[] = w.snap.pods.map((p) => ({ ...p, ips: p.ips.map((i) => i.address) }));
  for (const l of w.locals) {
    const p = out.find((q) => q.namespace === l.namespace && q.name === l.name);
    if (p) {
      if (!p.ips.includes(l.address)) p.ips.push(l.address);
    } else out.push({ namespace: l.namespace!, name: l.name!, labels: {}, ips: [l.address], namedPorts: [] });
  }
  return out;
}

function nsLabels(snap: PolicySnapshot, ns: string): Record<string, string> {
  const n = snap.namespaces.find((q) => q.name === ns);
  return { ...(n?.labels ?? {}), 'kubernetes.io/metadata.name': ns };
}

function peerMatches(snap: PolicySnapshot, policyNs: string, p: NetworkPolicyPeer, ip: string, pods: RefPod[]): boolean {
  if (p.ipBlock) return inBlock(ip, p.ipBlock.cidr) && !(p.ipBlock.except ?? []).some((e) => inBlock(ip, e));
  return pods.some(
    (pod) =>
      pod.ips.includes(ip) &&
      (p.namespaceSelector ? matches(p.namespaceSelector, nsLabels(snap, pod.namespace)) : pod.namespace === policyNs) &&
      (p.podSelector ? matches(p.podSelector, pod.labels) : true),
  );
}

function portMatches(ps: NetworkPolicyPort[] | undefined, flow: PolicyFlow, dstPods: RefPod[]): boolean {
  if (!ps || ps.length === 0) return true;
  if (flow.protocol === 'ICMP') return false;
  return ps.some((p) => {
    if ((p.protocol ?? 'TCP') !== flow.protocol) return false;
    if (p.port === undefined) return true;
    if (typeof p.port === 'number') return flow.port! >= p.port && flow.port! <= (p.endPort ?? p.port);
    return dstPods.some((d) => d.namedPorts.some((n) => n.name === p.port && n.protocol === flow.protocol && n.port === flow.port));
  });
}

function types(np: NetworkPolicy): string[] {
  if (np.spec.policyTypes && np.spec.policyTypes.length > 0) return np.spec.policyTypes;
  return np.spec.egress && np.spec.egress.length > 0 ? ['Ingress', 'Egress'] : ['Ingress'];
}

function reference(w: { snap: PolicySnapshot; locals: LocalEndpoint[] }, local: LocalEndpoint, flow: PolicyFlow): boolean {
  const pods = refPods(w);
  const me = pods.find((p) => p.namespace === local.namespace && p.name === local.name)!;
  const type = flow.direction === 'ingress' ? 'Ingress' : 'Egress';
  const selecting = w.snap.policies.filter((np) => np.metadata.namespace === me.namespace && matches(np.spec.podSelector, me.labels) && types(np).includes(type));
  if (selecting.length === 0) return true;
  // The destination pod(s), whose named ports count: me for ingress, the remote's owner(s) for egress.
  const dst = flow.direction === 'ingress' ? [me] : pods.filter((p) => p.ips.includes(flow.remote));
  return selecting.some((np) => {
    const rules = (flow.direction === 'ingress' ? np.spec.ingress : np.spec.egress) ?? [];
    return rules.some((r) => {
      const peers = 'from' in r ? r.from : (r as { to?: NetworkPolicyPeer[] }).to;
      const peerOk = !peers || peers.length === 0 || peers.some((p) => peerMatches(w.snap, np.metadata.namespace, p, flow.remote, pods));
      return peerOk && portMatches(r.ports, flow, dst);
    });
  });
}

t.test('compiled policy = reference semantics on random worlds and flows', async (t) => {
  let flows = 0;
  let allowed = 0;
  let isolatedFlows = 0;
  let mismatches = 0;
  for (const seed of SEEDS) {
    const r = new Rng(seed);
    for (let wi = 0; wi < WORLDS_PER_SEED; wi++) {
      const w = world(r);
      if (w.locals.length === 0) continue;
      const res = compilePolicies(w.snap, w.locals);
      t.same(res.problems.filter((p) => !/named port/.test(p.message)), [], 'random policies are valid');
      const addrs = [...new Set([...w.locals.map((l) => l.address), ...w.snap.pods.flatMap((p) => p.ips.map((i) => i.address)), ...EXTERNAL])];
      for (let f = 0; f < FLOWS_PER_WORLD; f++) {
        const li = r.int(w.locals.length);
        const local = w.locals[li]!;
        const protocol = r.pick([...PROTOS, 'ICMP'] as const);
        const flow: PolicyFlow = {
          direction: r.pick(['ingress', 'egress'] as const),
          remote: r.pick(addrs),
          protocol,
          ...(protocol === 'ICMP' ? {} : { port: r.chance(0.9) ? r.pick(PORTS) : 1 + r.int(65535) }),
        };
        const want = reference(w, local, flow);
        const ep = res.endpoints[li]!;
        const got = policyAllows(ep, flow);
        flows++;
        if (want) allowed++;
        if ((flow.direction === 'ingress' ? ep.ingress : ep.egress).isolated) isolatedFlows++;
        if (got !== want) {
          mismatches++;
          if (mismatches <= 3) {
            t.fail('verdict differs', { seed, world: wi, local, flow, want, got, snapshot: JSON.stringify(w.snap), compiled: JSON.stringify(ep) });
          }
        }
      }
    }
  }
  t.equal(mismatches, 0, `${flows} flows, ${allowed} allowed, ${isolatedFlows} on isolated directions`);
  // The generator must exercise both verdicts on isolated directions, or the test proves little.
  t.ok(isolatedFlows > flows / 4 && allowed > flows / 10 && allowed < flows - flows / 10, 'both verdicts are common');
});
