// The incremental compiler against a compile from scratch: random sequences
// of cluster events (policies added, updated, deleted; pods added, deleted,
// relabelled, readdressed, given other named ports, or re-sent unchanged;
// namespaces relabelled, added, deleted; local endpoints added and removed)
// are applied one at a time to one PolicyCompiler, and after every step its
// result must equal, byte for byte, what a fresh compiler gives for the same
// snapshot: endpoints, the policies selecting each, problems and counts.
// Bounded: fixed seeds and step counts, a small label and address universe
// so that selectors, excepts and named ports collide often. Both kinds of
// source (pods authoritative or not) are run.
import t from 'tap';
import { compilePolicies, PolicyCompiler, type CompileResult, type LocalEndpoint } from '../../control/policy/compile.js';
import type { LabelSelector, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, PolicyNamespace, PolicyPod, PolicySnapshot } from '../../control/policy/types.js';
import { Rng } from '../faults/helpers/scale.js';

const SEEDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
const STEPS = 120;



const NS = ['x', 'y', 'z', 'w'];
const KEYS = ['app', 'tier'];
const VALUES = ['a', 'b', 'c'];
const NAMED = [
  { name: 'http', protocol: 'TCP' as const, ports: [80, 8080] },
  { name: 'dns', protocol: 'UDP' as const, ports: [53] },
];
const CIDRS = ['10.0.0.0/24', '10.0.0.0/28', '10.0.0.16/28', '0.0.0.0/0', '192.168.0.0/16'];

function labels(r: Rng): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of KEYS) if (r.chance(0.6)) out[k] = r.pick(VALUES);
  return out;
}

function selector(r: Rng): LabelSelector {
  const sel: LabelSelector = {};
  if (r.chance(0.6)) {
    sel.matchLabels = {};
    for (const k of KEYS) if (r.chance(0.4)) sel.matchLabels[k] = r.pick(VALUES);
  }
  if (r.chance(0.3)) {
    const key = r.pick(KEYS);
    const operator = r.pick(['In', 'NotIn', 'Exists', 'DoesNotExist'] as const);
    sel.matchExpressions = [operator === 'In' || operator === 'NotIn' ? { key, operator, values: [r.pick(VALUES)] } : { key, operator }];
  }
  return sel;
}

function peer(r: Rng): NetworkPolicyPeer {
  switch (r.int(4)) {
    case 0:
      return { podSelector: selector(r) };
    case 1:
      return { namespaceSelector: selector(r) };
    case 2:
      return { podSelector: selector(r), namespaceSelector: selector(r) };
    default: {
      const cidr = r.pick(CIDRS);
      return { ipBlock: cidr === '10.0.0.0/24' && r.chance(0.5) ? { cidr, except: ['10.0.0.0/29'] } : { cidr } };
    }
  }
}

function port(r: Rng): NetworkPolicyPort {
  if (r.chance(0.4)) return { protocol: r.pick(NAMED).protocol, port: r.pick(NAMED).name };
  return r.chance(0.5) ? { port: r.pick([53, 80, 443]) } : { protocol: 'UDP', port: 53, endPort: 60 };
}

function rules(r: Rng, field: 'from' | 'to'): Array<{ from?: NetworkPolicyPeer[]; to?: NetworkPolicyPeer[]; ports?: NetworkPolicyPort[] }> {
  return Array.from({ length: 1 + r.int(2) }, () => {
    const rule: { from?: NetworkPolicyPeer[]; to?: NetworkPolicyPeer[]; ports?: NetworkPolicyPort[] } = {};
    if (r.chance(0.85)) rule[field] = Array.from({ length: 1 + r.int(2) }, () => peer(r));
    if (r.chance(0.6)) rule.ports = Array.from({ length: 1 + r.int(2) }, () => port(r));
    return rule;
  });
}

function policy(r: Rng, namespace: string, name: string): NetworkPolicy {
  // Now and then an invalid one: its problems must come and go with it.
  if (r.chance(0.05)) return { metadata: { namespace, name }, spec: { podSelector: { matchExpressions: [{ key: 'app', operator: 'In' }] } } };
  // A broken one without a namespace: it selects in every namespace (fail closed).
  if (r.chance(0.03)) return { metadata: { name } as NetworkPolicy['metadata'], spec: { podSelector: selector(r) } };
  const spec: NetworkPolicy['spec'] = { podSelector: r.chance(0.2) ? {} : selector(r) };
  if (r.chance(0.8)) spec.ingress = rules(r, 'from');
  if (r.chance(0.6)) spec.egress = rules(r, 'to');
  if (r.chance(0.4)) spec.policyTypes = r.pick([['Ingress'], ['Egress'], ['Ingress', 'Egress']]);
  return { metadata: { namespace, name }, spec };
}

/** A mutable cluster whose snapshots keep unchanged objects, as the real sources do. */
class World {
  policies = new Map<string, NetworkPolicy>();
  namespaces = new Map<string, PolicyNamespace>();
  pods = new Map<string, PolicyPod>();
  locals = new Map<string, LocalEndpoint>();
  private next = 0;

  constructor(private readonly r: Rng) {
    for (const name of NS) if (r.chance(0.7)) this.namespaces.set(name, { name, labels: labels(r) });
    for (let i = 0; i < 10; i++) this.addPod();
    for (let i = 0; i < 4; i++) this.addPolicy();
  }

  snapshot(): PolicySnapshot {
    return { policies: [...this.policies.values()], namespaces: [...this.namespaces.values()], pods: [...this.pods.values()] };
  }

  private ip(): string {
    return `10.0.0.${1 + this.r.int(30)}`;
  }

  private namedPorts(): PolicyPod['namedPorts'] {
    return NAMED.filter(() => this.r.chance(0.5)).map((n) => ({ name: n.name, protocol: n.protocol, port: this.r.pick(n.ports) }));
  }

  addPolicy(): string {
    const name = `np${this.next++}`;
    this.policies.set(name, policy(this.r, this.r.pick(NS), name));
    return `add policy ${name}`;
  }

  addPod(): string {
    const r = this.r;
    const name = `pod${this.next++}`;
    const namespace = r.pick(NS);
    const address = this.ip();
    const local = r.chance(0.5);
    // Some local pods have no Pod object yet, some Pod objects no IP yet (the local endpoint gives it).
    if (!local || r.chance(0.8)) {
      this.pods.set(`${namespace}/${name}`, { namespace, name, labels: labels(r), ips: local && r.chance(0.4) ? [] : [{ family: 'ipv4', address }], namedPorts: this.namedPorts() });
    }
    if (local) this.locals.set(address, { family: 'ipv4', address, namespace, name });
    return `add pod ${namespace}/${name}${local ? ' (local)' : ''}`;
  }

  step(): string {
    const r = this.r;
    const pods = [...this.pods.keys()];
    const policies = [...this.policies.keys()];
    switch (r.int(12)) {
      case 0:
        return this.addPolicy();
      case 1: {
        if (policies.length === 0) return this.addPolicy();
        const name = r.pick(policies);
        const old = this.policies.get(name)!;
        this.policies.set(name, policy(r, r.chance(0.7) ? old.metadata.namespace : r.pick(NS), name));
        return `update policy ${name}`;
      }
      case 2: {
        if (policies.length === 0) return this.addPolicy();
        const name = r.pick(policies);
        this.policies.delete(name);
        return `delete policy ${name}`;
      }
      case 3:
        return this.addPod();
      case 4: {
        if (pods.length === 0) return this.addPod();
        const key = r.pick(pods);
        this.pods.delete(key);
        // Its local endpoint stays for a while now and then (DEL comes later).
        if (r.chance(0.6)) for (const [a, l] of this.locals) if (`${l.namespace}/${l.name}` === key) this.locals.delete(a);
        return `delete pod ${key}`;
      }
      case 5:
      case 6: {
        if (pods.length === 0) return this.addPod();
        const key = r.pick(pods);
        const p = this.pods.get(key)!;
        this.pods.set(key, { ...p, labels: labels(r) });
        return `relabel pod ${key}`;
      }
      case 7: {
        if (pods.length === 0) return this.addPod();
        const key = r.pick(pods);
        const p = this.pods.get(key)!;
        const what = r.int(3);
        if (what === 0) this.pods.set(key, { ...p, ips: p.ips.length > 0 && r.chance(0.3) ? [] : [{ family: 'ipv4', address: this.ip() }] });
        else if (what === 1) this.pods.set(key, { ...p, namedPorts: this.namedPorts() });
        else this.pods.set(key, { ...p }); // a status update: a new object, the same content
        return `${['readdress', 'reports ports of', 'status of'][what]} pod ${key}`;
      }
      case 8:
      case 9: {
        const name = r.pick(NS);
        if (this.namespaces.has(name) && r.chance(0.2)) {
          this.namespaces.delete(name);
          return `delete namespace ${name}`;
        }
        this.namespaces.set(name, { name, labels: labels(r) });
        return `label namespace ${name}`;
      }
      case 10: {
        // A local endpoint whose Pod object arrives only now (or an endpoint removed).
        const locals = [...this.locals.values()];
        const orphan = locals.find((l) => !this.pods.has(`${l.namespace}/${l.name}`));
        if (orphan && r.chance(0.7)) {
          this.pods.set(`${orphan.namespace}/${orphan.name}`, { namespace: orphan.namespace!, name: orphan.name!, labels: labels(r), ips: [], namedPorts: this.namedPorts() });
          return `pod ${orphan.namespace}/${orphan.name} arrives`;
        }
        if (locals.length === 0) return this.addPod();
        const gone = r.pick(locals);
        this.locals.delete(gone.address);
        return `remove endpoint ${gone.address}`;
      }
      default: {
        // An endpoint without pod names.
        const address = this.ip();
        if (this.locals.has(address)) return 'nothing';
        this.locals.set(address, { family: 'ipv4', address });
        return `add unnamed endpoint ${address}`;
      }
    }
  }
}

function text(res: CompileResult): string {
  return JSON.stringify({ ...res, selectedBy: [...res.selectedBy] });
}

for (const podsAuthoritative of [false, true]) {
  t.test(`incremental equals from scratch after every step (pods authoritative: ${podsAuthoritative})`, (t) => {
    let steps = 0;
    let failures = 0;
    for (const seed of SEEDS) {
      const r = new Rng(seed * 7919 + (podsAuthoritative ? 1 : 0));
      const w = new World(r);
      const inc = new PolicyCompiler({ podsAuthoritative });
      const history: string[] = [];
      for (let i = 0; i < STEPS && failures < 3; i++) {
        history.push(w.step());
        const snap = w.snapshot();
        const locals = [...w.locals.values()];
        // Sometimes the same snapshot twice (a coalesced notification), sometimes a one-endpoint compile (an ADD).
        const got = text(inc.update(snap, locals).result());
        if (r.chance(0.1)) inc.update(snap, locals);
        const want = text(compilePolicies(snap, locals, { podsAuthoritative }));
        steps++;
        if (got !== want) {
          failures++;
          t.fail(`seed ${seed} step ${i}: incremental differs from scratch`, { history: history.slice(-8), got, want });
        }
        if (locals.length > 0 && r.chance(0.2)) {
          const one = r.pick(locals).address;
          const only = new Set([one]);
          t.equal(JSON.stringify(inc.endpoint(one)), JSON.stringify(compilePolicies(snap, locals, { podsAuthoritative, only }).endpoints[0]), `seed ${seed} step ${i}: one endpoint`);
        }
      }
    }
    t.ok(steps >= SEEDS.length * STEPS, `${steps} steps compared`);
    t.end();
  });
}

t.test('a change costs what it touches: one policy updated re-resolves that policy only', (t) => {
  const pods: PolicyPod[] = [];
  const locals: LocalEndpoint[] = [];
  for (let i = 0; i < 60; i++) {
    const address = `10.1.0.${i + 1}`;
    pods.push({ namespace: `ns${i % 3}`, name: `p${i}`, labels: { app: `a${i % 10}` }, ips: [{ family: 'ipv4', address }], namedPorts: [] });
    if (i < 20) locals.push({ family: 'ipv4', address, namespace: `ns${i % 3}`, name: `p${i}` });
  }
  const mk = (i: number, port: number): NetworkPolicy => ({
    metadata: { namespace: `ns${i % 3}`, name: `np${i}` },
    spec: { podSelector: { matchLabels: { app: `a${i % 10}` } }, ingress: [{ from: [{ namespaceSelector: {} }], ports: [{ port }] }] },
  });
  const policies = Array.from({ length: 30 }, (_, i) => mk(i, 80));
  const namespaces = [0, 1, 2].map((i) => ({ name: `ns${i}`, labels: { team: `t${i}` } }));
  const c = new PolicyCompiler();
  c.update({ policies, namespaces, pods }, locals).result();
  const before = { ...c.work };
  t.equal(before.policiesResolved, 20, 'the 20 policies selecting a local endpoint (peers are resolved on use)');
  const next = [...policies];
  next[4] = mk(4, 443);
  const res = c.update({ policies: next, namespaces, pods }, locals).result();
  t.equal(c.work.policiesResolved - before.policiesResolved, 1, 'one policy resolved');
  t.equal(c.work.directions - before.directions, 1, 'one direction rebuilt (the endpoints np4 selects share it)');
  t.equal(text(res), text(compilePolicies({ policies: next, namespaces, pods }, locals)));
  // A pod update that changes nothing policy reads costs nothing.
  const mid = { ...c.work };
  const pods2 = [...pods];
  pods2[7] = { ...pods[7]! };
  c.update({ policies: next, namespaces, pods: pods2 }, locals).result();
  t.same(c.work, mid, 'status-only pod update: no work');
  // A namespace relabelled where no selector tells the labels apart: nothing either.
  c.update({ policies: next, namespaces: [{ name: 'ns0', labels: { team: 'other' } }, ...namespaces.slice(1)], pods: pods2 }, locals).result();
  t.same(c.work, mid, 'namespace relabelled, no namespace selector minds');
  t.end();
});

t.test('pods authoritative: a local endpoint whose Pod has not arrived is default-deny and no peer, until it arrives', (t) => {
  const web = { family: 'ipv4' as const, address: '10.0.0.5', namespace: 'shop', name: 'web' };
  const db = { family: 'ipv4' as const, address: '10.0.0.6', namespace: 'shop', name: 'db' };
  // A policy that selects unlabelled pods and allows everything: an unlabelled pod would be open.
  const allowAll: NetworkPolicy = {
    metadata: { namespace: 'shop', name: 'allow-all' },
    spec: { podSelector: { matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['db'] }] }, ingress: [{}], egress: [{}], policyTypes: ['Ingress', 'Egress'] },
  };
  const fromAll: NetworkPolicy = { metadata: { namespace: 'shop', name: 'db-from-shop' }, spec: { podSelector: { matchLabels: { app: 'db' } }, ingress: [{ from: [{ podSelector: {} }] }] } };
  const dbPod: PolicyPod = { namespace: 'shop', name: 'db', labels: { app: 'db' }, ips: [], namedPorts: [] };
  const snap: PolicySnapshot = { policies: [allowAll, fromAll], namespaces: [], pods: [dbPod] };
  const c = new PolicyCompiler({ podsAuthoritative: true });
  let res = c.update(snap, [web, db]).result();
  t.same(res.endpoints[0], { family: 'ipv4', address: web.address, pod: 'shop/web', ingress: { isolated: true, rules: [] }, egress: { isolated: true, rules: [] } }, 'unknown pod: default deny both ways');
  t.same(res.selectedBy.get(web.address), []);
  t.same(res.endpoints[1]!.ingress.rules[0]?.peers, [{ family: 'ipv4', cidr: '10.0.0.6/32', except: [] }], 'db allows only itself: the unknown pod is no peer');
  // The directory behaviour: an unlabelled pod.
  const dir = compilePolicies(snap, [web, db]);
  t.same(dir.endpoints[0]!.ingress, { isolated: true, rules: [{ peers: null, ports: null, sources: ['shop/allow-all'] }] }, 'not authoritative: a pod without labels');
  // The Pod arrives: the endpoint is compiled with its labels.
  res = c.update({ ...snap, pods: [dbPod, { namespace: 'shop', name: 'web', labels: { app: 'web' }, ips: [], namedPorts: [] }] }, [web, db]).result();
  t.same(res.selectedBy.get(web.address), ['shop/allow-all']);
  t.same(res.endpoints[0]!.ingress, { isolated: true, rules: [{ peers: null, ports: null, sources: ['shop/allow-all'] }] });
  t.match(JSON.stringify(res.endpoints[1]), /10\.0\.0\.5\/32/, 'and is a peer of db now');
  t.end();
});
