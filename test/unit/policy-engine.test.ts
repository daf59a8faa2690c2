// The policy engine: default deny before the first sync; after it, policyFor
// gives the compiled policy; every source change and endpoint add/remove
// hands exactly the endpoints whose policy changed to apply; a failed apply
// is retried; latency is measured from the change to the end of apply.
import t from 'tap';
import { PolicyEngine } from '../../control/policy/engine.js';
import type { EndpointPolicy, PolicySnapshot, PolicySource } from '../../control/policy/types.js';
import { np } from './policy-fixtures.js';

class MemorySource implements PolicySource {
  snap: PolicySnapshot | undefined;
  private readonly listeners = new Set<() => void>();
  started = false;
  snapshot(): PolicySnapshot | undefined {
    return this.snap;
  }
  onChange(l: () => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  async start(): Promise<void> {
    this.started = true;
  }
  async stop(): Promise<void> {
    this.started = false;
  }
  set(s: PolicySnapshot): void {
    this.snap = s;
    for (const l of this.listeners) l();
  }
}

const WEB = { family: 'ipv4' as const, address: '10.0.0.5', namespace: 'shop', name: 'web' };
const DB = { family: 'ipv4' as const, address: '10.0.0.6', namespace: 'shop', name: 'db' };
const pods = [
  { namespace: 'shop', name: 'web', labels: { app: 'web' }, ips: [], namedPorts: [] },
  { namespace: 'shop', name: 'db', labels: { app: 'db' }, ips: [], namedPorts: [] },
];
const webFromDb = np('shop', 'web-from-db', { podSelector: { matchLabels: { app: 'web' } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: 'db' } } }] }] });

function engine(src: MemorySource, fail?: { count: number }) {
  const applied: EndpointPolicy[][] = [];
  const latencies: number[] = [];
  let clock = 0;
  const e = new PolicyEngine({
    source: src,
    apply: async (changed) => {
      if (fail && fail.count > 0) {
        fail.count--;
        throw new Error('kernel said no');
      }
      applied.push(changed);
    },
    retryMs: 10,
    onSyncLatency: (s) => latencies.push(s),
    now: () => clock,
  });
  return { e, applied, latencies, tick: (ms: number) => (clock += ms) };
}

t.test('before the first sync every endpoint starts default-deny; after it, the compiled policy', async (t) => {
  const src = new MemorySource();
  const { e } = engine(src);
  await e.start();
  t.ok(src.started);
  t.same(e.policyFor(WEB), {
    family: 'ipv4',
    address: WEB.address,
    pod: 'shop/web',
    ingress: { isolated: true, rules: [] },
    egress: { isolated: true, rules: [] },
  });
  t.same(e.status().synced, false);
  e.addEndpoint(DB);
  src.set({ policies: [webFromDb], namespaces: [], pods });
  await e.idle();
  t.same(e.status().synced, true);
  t.same(e.policyFor(WEB).ingress, {
    isolated: true,
    rules: [{ peers: [{ family: 'ipv4', cidr: '10.0.0.6/32', except: [] }], ports: null, sources: ['shop/web-from-db'] }],
  });
  t.same(e.policyFor(WEB).egress, { isolated: false, rules: [] });
  t.same(e.policyFor({ family: 'ipv4', address: '10.0.0.9' }).ingress.isolated, false, 'no pod identity: not selected');
});

t.test('only changed endpoints are applied; adds and removes move peers of others', async (t) => {
  const src = new MemorySource();
  src.set({ policies: [webFromDb], namespaces: [], pods });
  const { e, applied, latencies, tick } = engine(src);
  await e.start();
  t.same(applied, [], 'no endpoints yet: nothing to apply');
  // web is added with what ADD programmed: no db yet, so its ingress allows nobody.
  const programmed = e.policyFor(WEB);
  t.same(programmed.ingress, { isolated: true, rules: [] });
  e.addEndpoint(WEB, programmed);
  await e.idle();
  t.same(applied, [], 'what ADD programmed is current');
  // db arrives: it becomes a peer of web, so web changes; db itself is new (unknown) so it is applied too.
  e.addEndpoint(DB);
  await e.idle();
  t.same(applied.length, 1);
  t.same(applied[0]!.map((p) => p.address).sort(), [WEB.address, DB.address]);
  applied.length = 0;
  // A policy change that touches nobody's result: nothing applied.
  src.set({ policies: [webFromDb, np('other', 'x', {})], namespaces: [], pods });
  await e.idle();
  t.same(applied, []);
  // Relabel db: web loses its peer.
  tick(5);
  src.set({ policies: [webFromDb], namespaces: [], pods: [pods[0]!, { ...pods[1]!, labels: { app: 'cache' } }] });
  tick(7);
  await e.idle();
  t.same(applied.length, 1);
  t.same(applied[0]!.map((p) => [p.address, p.ingress.rules.length]), [[WEB.address, 0]]);
  t.ok(latencies.length >= 1);
  applied.length = 0;
  e.removeEndpoint(DB.address);
  await e.idle();
  t.same(applied, [], 'db was not a peer any more: nothing to change');
  t.same(e.endpoints().map((l) => l.address), [WEB.address]);
});

t.test('a burst of changes coalesces into one apply', async (t) => {
  const src = new MemorySource();
  src.set({ policies: [], namespaces: [], pods });
  const { e, applied } = engine(src);
  await e.start();
  e.addEndpoint(WEB, e.policyFor(WEB));
  e.addEndpoint(DB, e.policyFor(DB));
  await e.idle();
  t.same(applied, []);
  for (let i = 0; i < 50; i++) src.set({ policies: i % 2 ? [] : [webFromDb], namespaces: [], pods });
  src.set({ policies: [webFromDb], namespaces: [], pods });
  await e.idle();
  t.same(applied.length, 1);
  t.same(applied[0]!.map((p) => p.address), [WEB.address]);
});

t.test('a failed apply is retried; the endpoints count as pending meanwhile', async (t) => {
  const src = new MemorySource();
  src.set({ policies: [], namespaces: [], pods });
  const fail = { count: 2 };
  const errors: unknown[] = [];
  const { e, applied } = engine(src, fail);
  (e as unknown as { opts: { onError: (x: unknown) => void } }).opts.onError = (x) => errors.push(x);
  await e.start();
  e.addEndpoint(WEB);
  await e.idle();
  t.same(e.status().pending, 1);
  t.same(applied, []);
  // The retry timer runs the sync again until apply succeeds.
  while (applied.length === 0) await new Promise((r) => setTimeout(r, 5));
  await e.idle();
  t.same(errors.length, 2);
  t.same(e.status().pending, 0);
  t.same(applied[0]!.map((p) => p.address), [WEB.address]);
});

t.test('view shows the selecting policies, the compiled and the applied policy; problems include the source\'s', async (t) => {
  const src = new MemorySource() as MemorySource & { problems(): Array<{ policy: string; message: string }> };
  src.problems = () => [{ policy: 'bad.yaml', message: 'does not parse' }];
  src.set({ policies: [webFromDb, np('shop', 'broken', { ingress: [{ from: [{ ipBlock: { cidr: 'nope' } }] }] })], namespaces: [], pods });
  const { e } = engine(src);
  await e.start();
  e.addEndpoint(WEB);
  e.addEndpoint(DB);
  await e.idle();
  const [v] = e.view('shop/web');
  t.same(v!.selectedBy, ['shop/broken', 'shop/web-from-db']);
  t.same(v!.policy, v!.applied);
  t.same(e.view().length, 2);
  t.same(e.view('10.0.0.6')[0]!.endpoint, DB);
  t.same(e.problems().map((p) => p.policy), ['bad.yaml', 'shop/broken']);
  t.same(e.status().stats?.validPolicies, 2);
});

t.test('the endpoint list is corrected from the node store on every sync (a CNI call that ran standalone)', async (t) => {
  const src = new MemorySource();
  src.set({ policies: [webFromDb], namespaces: [], pods });
  let store: Array<typeof WEB> = [WEB];
  const drift: Array<[string[], string[]]> = [];
  const applied: EndpointPolicy[][] = [];
  const e = new PolicyEngine({
    source: src,
    apply: async (changed) => void applied.push(changed),
    endpoints: async () => store,
    onDrift: (added, removed) => drift.push([added, removed]),
    resyncMs: 0,
  });
  await e.start();
  t.same(e.endpoints(), [WEB], 'the store\'s endpoint is known without addEndpoint');
  t.same(applied.flat().map((p) => p.address), [WEB.address], 'and its policy applied (kernel state unknown)');
  // db was ADDed standalone, web DELeted standalone: the next sync (any change) sees it.
  store = [DB];
  applied.length = 0;
  src.set({ policies: [webFromDb, np('other', 'x', {})], namespaces: [], pods });
  await e.idle();
  t.same(e.endpoints(), [DB]);
  t.same(drift.at(-1), [[DB.address], [WEB.address]]);
  t.same(applied.flat().map((p) => p.address), [DB.address]);
  // What the agent adds while the store is being read is not undone by the read.
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let reading = false;
  let slowStore: Array<typeof WEB> = [];
  const readStore = async (): Promise<Array<typeof WEB>> => {
    const seen = [...slowStore];
    reading = true;
    await gate;
    return seen;
  };
  const slow = new PolicyEngine({ source: src, apply: async () => undefined, endpoints: readStore, resyncMs: 0 });
  const started = slow.start();
  while (!reading) await new Promise((r) => setImmediate(r));
  // The ADD marks web ready in the store, then tells the engine, while the engine's read (from before) is under way.
  slowStore = [WEB];
  slow.addEndpoint(WEB);
  release();
  await started;
  await slow.idle();
  t.same(slow.endpoints(), [WEB], 'added during the read: kept');
});

t.test('pods authoritative (Kubernetes): an endpoint whose Pod is not in the snapshot starts default-deny and follows its Pod', async (t) => {
  const src = new MemorySource() as MemorySource & { podsAuthoritative: boolean };
  src.podsAuthoritative = true;
  const openToUnlabelled = np('shop', 'open', { podSelector: { matchExpressions: [{ key: 'app', operator: 'DoesNotExist' }] }, ingress: [{}], egress: [{}], policyTypes: ['Ingress', 'Egress'] });
  src.set({ policies: [openToUnlabelled, webFromDb], namespaces: [], pods: [pods[1]!] });
  const { e, applied } = engine(src);
  await e.start();
  const fresh = { family: 'ipv4' as const, address: '10.0.0.7', namespace: 'shop', name: 'new' };
  const first = e.policyFor(fresh);
  t.same(first, { family: 'ipv4', address: fresh.address, pod: 'shop/new', ingress: { isolated: true, rules: [] }, egress: { isolated: true, rules: [] } }, 'not "unlabelled, so open": default deny');
  e.addEndpoint(fresh, first);
  await e.idle();
  t.same(applied, [], 'nothing to change while the Pod is missing');
  // The watch delivers the Pod (no labels): the open policy selects it now.
  src.set({ policies: [openToUnlabelled, webFromDb], namespaces: [], pods: [pods[1]!, { namespace: 'shop', name: 'new', labels: {}, ips: [], namedPorts: [] }] });
  await e.idle();
  t.same(applied.flat().map((p) => [p.address, p.ingress.rules.length, p.egress.rules.length]), [[fresh.address, 1, 1]]);
});
