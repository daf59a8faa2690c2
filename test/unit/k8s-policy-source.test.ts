// The Kubernetes NetworkPolicy source (control/k8s/policy-source.ts) against
// the stand-in on 127.0.0.1 through the real @kubernetes/client-node: the
// snapshot after creates, label changes and deletes of pods, namespaces and
// policies; relist after 410; sharing the daemon's pod watch. And the
// stand-in's own wire behaviour for these resources: labelSelector on lists
// and watches, ADDED/DELETED when a label change makes an object start or
// stop matching a watch's selector, the namespace name label. And the
// daemon's integration with `networkPolicy` on (one cluster-wide pod watch).
import t from 'tap';
import http from 'node:http';
import path from 'node:path';
import { tmpdir } from 'node:os';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { pino } from 'pino';
import { createKubernetesPolicySource, podFromObject, policyFromObject, namespaceFromObject } from '../../control/k8s/policy-source.js';
import { KubernetesIntegration } from '../../control/k8s/kubernetes.js';
import type { Agent } from '../../control/agent/agent.js';
import { Reflector } from '../../control/k8s/reflector.js';
import { PodCache } from '../../control/k8s/pod-cache.js';
import type { KubeObject } from '../../control/k8s/kube-api.js';
import type { PolicySnapshot } from '../../control/policy/types.js';
import type { KubeObj, KubeStandin } from '../../lab/kube-standin.js';
import { startStandin, waitFor } from './k8s-standin-helper.js';

const log = pino({ level: 'silent' });
const FAST = { initialMs: 40, maxMs: 320, maxErrors: 4 };

function ns(name: string, labels: Record<string, string> = {}): KubeObj {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } };
}

function pod(namespace: string, name: string, labels: Record<string, string>, ip: string | undefined, extra: { node?: string; ports?: unknown[]; status?: Record<string, unknown>; spec?: Record<string, unknown> } = {}): KubeObj {
  return {
    apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace, labels },
    spec: { nodeName: extra.node ?? 'node-a', containers: [{ name: 'c', image: 'x', ports: extra.ports ?? [] }], ...extra.spec },
    status: { phase: 'Running', ...(ip ? { podIP: ip, podIPs: [{ ip }] } : {}), ...extra.status },
  };
}

function netpol(namespace: string, name: string, spec: Record<string, unknown>): KubeObj {
  return { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name, namespace }, spec };
}

const DENY_INGRESS = { podSelector: {}, policyTypes: ['Ingress'] };
const ALLOW_FROM_Y = {
  podSelector: { matchLabels: { pod: 'a' } },
  ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } }, podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: ['b', 'c'] }] } }], ports: [{ protocol: 'TCP', port: 'serve-80' }, { port: 81, endPort: 90 }] }],
  egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['10.1.0.0/16'] } }] }],
  policyTypes: ['Ingress', 'Egress'],
};

const names = (snap: PolicySnapshot | undefined, what: 'policies' | 'pods'): string[] =>
  what === 'policies' ? snap!.policies.map((p) => `${p.metadata.namespace}/${p.metadata.name}`) : snap!.pods.map((p) => `${p.namespace}/${p.name}`);

/** A raw GET, to see the stand-in's wire answer without a client in between. */
function get(port: number, pathAndQuery: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: pathAndQuery }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

function seed(s: KubeStandin): void {
  s.put(ns('x', { ns: 'x' }));
  s.put(ns('y', { ns: 'y' }));
  s.put(pod('x', 'a', { pod: 'a' }, '10.240.0.10', { ports: [{ name: 'serve-80', containerPort: 80 }, { name: 'dns', containerPort: 53, protocol: 'UDP' }, { containerPort: 8080 }] }));
  s.put(pod('y', 'b', { pod: 'b' }, '10.240.1.11', { node: 'node-b' }));
  s.put(netpol('x', 'deny', DENY_INGRESS));
}

t.test('converters: what a pod, a namespace and a policy become', async (t) => {
  const p = podFromObject(pod('x', 'a', { pod: 'a' }, '10.240.0.10', { ports: [{ name: 'http', containerPort: 80 }, { name: 'q', containerPort: 9, protocol: 'SCTP' }, { name: 'bad', containerPort: 1, protocol: 'ICMP' }] }));
  t.same(p, {
    namespace: 'x', name: 'a', labels: { pod: 'a' }, ips: [{ family: 'ipv4', address: '10.240.0.10' }],
    namedPorts: [{ name: 'http', protocol: 'TCP', port: 80 }, { name: 'q', protocol: 'SCTP', port: 9 }],
  }, 'IPv4 with its family; named ports with protocol (TCP by default); an unknown protocol skipped');
  t.same(podFromObject(pod('x', 'd', {}, undefined, { status: { podIPs: [{ ip: '10.240.0.12' }, { ip: 'fd00::12' }], podIP: '10.240.0.12' } }))!.ips,
    [{ family: 'ipv4', address: '10.240.0.12' }], 'dual-stack: the IPv4 address (IPv6 waits for IpFamily to grow)');
  t.same(podFromObject(pod('x', 'e', {}, undefined, { status: { podIP: '10.240.0.13' } }))!.ips, [{ family: 'ipv4', address: '10.240.0.13' }], 'podIP when podIPs is absent');
  t.same(podFromObject(pod('x', 'f', {}, undefined, { status: { phase: 'Pending' } }))!.ips, [], 'no IP yet: no peer address');
  t.equal(podFromObject(pod('x', 'h', {}, '10.240.0.4', { spec: { hostNetwork: true } })), undefined, 'host-network pod left out');
  t.equal(podFromObject(pod('x', 'j', {}, '10.240.0.14', { status: { phase: 'Succeeded' } })), undefined, 'finished pod left out (its IP may be reused)');
  t.same(namespaceFromObject(ns('x', { team: 't' })), { name: 'x', labels: { 'kubernetes.io/metadata.name': 'x', team: 't' } }, 'the name label is there even from an old server');
  t.same(policyFromObject(netpol('x', 'p', { policyTypes: ['Egress'] }))!.spec, { policyTypes: ['Egress'], podSelector: {} }, 'no podSelector = every pod of the namespace');
});

t.test('the stand-in serves namespaces and networkpolicies with labelSelector, and selector transitions on watches', async (t) => {
  const { s, port } = await startStandin(t);
  s.put(ns('x', { team: 'red', env: 'prod' }));
  s.put(ns('y', { team: 'blue' }));
  s.put(netpol('x', 'p1', DENY_INGRESS));
  const list = async (path: string): Promise<{ status: number; items: string[] }> => {
    const r = await get(port, path);
    const body = JSON.parse(r.body) as { items?: KubeObj[] };
    return { status: r.status, items: (body.items ?? []).map((o) => o.metadata.name) };
  };
  t.same((await list('/api/v1/namespaces?labelSelector=team%3Dred')).items, ['x'], 'team=red');
  t.same((await list('/api/v1/namespaces?labelSelector=team%20notin%20(red)')).items, ['y'], 'team notin (red)');
  t.same((await list('/api/v1/namespaces?labelSelector=team%20in%20(red%2Cblue)%2Cenv')).items, ['x'], 'team in (red,blue),env');
  t.same((await list('/api/v1/namespaces?labelSelector=!env')).items, ['y'], '!env');
  t.same((await list('/api/v1/namespaces?labelSelector=team!%3Dred')).items, ['y'], 'team!=red');
  t.same((await list('/api/v1/namespaces?labelSelector=kubernetes.io%2Fmetadata.name%3Dy')).items, ['y'], 'the API server\'s namespace name label');
  t.equal((await list('/api/v1/namespaces?labelSelector=team%20in%20red')).status, 400, 'bad selector syntax: 400');
  t.same((await list('/apis/networking.k8s.io/v1/networkpolicies')).items, ['p1'], 'networkpolicies of every namespace');
  t.same((await list('/apis/networking.k8s.io/v1/namespaces/y/networkpolicies')).items, [], 'networkpolicies of one namespace');
  t.equal((await get(port, '/api/v1/networkpolicies')).status, 404, 'networkpolicies are not in the core group');

  // A watch with a labelSelector: a label change in is ADDED, out is DELETED; a delete of a matching object is DELETED.
  const rv = s.resourceVersion;
  s.put(ns('y', { team: 'red' }));
  s.put(ns('x', { team: 'blue' }));
  s.put(ns('x', { team: 'blue', more: '1' }));
  s.put(ns('z', { team: 'red' }));
  s.delete('namespaces', undefined, 'z');
  const events = await new Promise<string[]>((resolve, reject) => {
    const out: string[] = [];
    const req = http.get({ host: '127.0.0.1', port, path: `/api/v1/namespaces?watch=1&resourceVersion=${rv}&labelSelector=team%3Dred` }, (res) => {
      let buf = '';
      res.on('data', (c: Buffer) => {
        buf += c.toString();
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          const e = JSON.parse(buf.slice(0, i)) as { type: string; object: KubeObj };
          buf = buf.slice(i + 1);
          out.push(`${e.type} ${e.object.metadata.name}`);
          if (out.length === 4) {
            req.destroy();
            resolve(out);
          }
        }
      });
    });
    req.on('error', (err) => (out.length === 4 ? undefined : reject(err)));
  });
  t.same(events, ['ADDED y', 'DELETED x', 'ADDED z', 'DELETED z'], 'y starts matching, x stops (its unrelated change after that is not sent), z created and deleted');
});

t.test('policy source: snapshot after create, label change and delete; relist after 410', async (t) => {
  const { s, api } = await startStandin(t);
  seed(s);
  const source = createKubernetesPolicySource(api, { logger: log, backoff: FAST });
  let changes = 0;
  source.onChange(() => changes++);
  t.equal(source.snapshot(), undefined, 'no snapshot before the first sync');
  s.failNext(3);
  await source.start();
  t.teardown(() => source.stop());
  await source.synced();
  const stats = source.stats();
  t.equal(s.requests.filter((q) => q.status === 500).length, 3, 'three lists answered 500');
  t.equal(Object.values(stats).reduce((n, x) => n + Number(x.errors), 0), 3, 'each counted as an error and retried');
  await waitFor('the first notification', () => changes > 0);
  let snap = source.snapshot()!;
  t.same(names(snap, 'policies'), ['x/deny']);
  t.same(snap.policies[0]!.spec, DENY_INGRESS);
  t.same(snap.namespaces, [
    { name: 'x', labels: { ns: 'x', 'kubernetes.io/metadata.name': 'x' } },
    { name: 'y', labels: { ns: 'y', 'kubernetes.io/metadata.name': 'y' } },
  ]);
  t.same(snap.pods, [
    { namespace: 'x', name: 'a', labels: { pod: 'a' }, ips: [{ family: 'ipv4', address: '10.240.0.10' }], namedPorts: [{ name: 'serve-80', protocol: 'TCP', port: 80 }, { name: 'dns', protocol: 'UDP', port: 53 }] },
    { namespace: 'y', name: 'b', labels: { pod: 'b' }, ips: [{ family: 'ipv4', address: '10.240.1.11' }], namedPorts: [] },
  ], 'pods of every node, with IPs and named ports');
  t.equal(source.snapshot(), snap, 'unchanged: the same snapshot object');

  // Creates.
  s.put(netpol('x', 'allow-from-y', ALLOW_FROM_Y));
  s.put(pod('y', 'c', { pod: 'c' }, '10.240.1.12', { node: 'node-c' }));
  s.put(ns('z', { ns: 'z' }));
  snap = await waitFor('the creates', () => {
    const v = source.snapshot()!;
    return v.policies.length === 2 && v.pods.length === 3 && v.namespaces.length === 3 && v;
  });
  t.same(snap.policies.find((p) => p.metadata.name === 'allow-from-y')!.spec, ALLOW_FROM_Y, 'the policy spec as written (ports, endPort, ipBlock except, selectors)');
  t.ok(snap.policies.every((p) => p.metadata.uid && p.metadata.resourceVersion), 'uid and resourceVersion kept');

  // Label changes: a pod's, a namespace's; a policy update.
  s.put(pod('y', 'b', { pod: 'b', role: 'db' }, '10.240.1.11', { node: 'node-b' }));
  s.put(ns('y', { ns: 'y', env: 'prod' }));
  s.put(netpol('x', 'deny', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] }));
  snap = await waitFor('the label changes', () => {
    const v = source.snapshot()!;
    return v.pods.find((p) => p.name === 'b')?.labels.role === 'db' && v.namespaces.find((n) => n.name === 'y')?.labels.env === 'prod'
      && v.policies.find((p) => p.metadata.name === 'deny')?.spec.policyTypes?.length === 2 && v;
  });
  t.same(snap.pods.find((p) => p.name === 'b')!.labels, { pod: 'b', role: 'db' });
  t.same(snap.namespaces.find((n) => n.name === 'y')!.labels, { ns: 'y', env: 'prod', 'kubernetes.io/metadata.name': 'y' });

  // A pod's IP changes (restarted sandbox), a pod finishes.
  s.put(pod('x', 'a', { pod: 'a' }, '10.240.0.20', { ports: [{ name: 'serve-80', containerPort: 80 }] }));
  s.put(pod('y', 'c', { pod: 'c' }, '10.240.1.12', { node: 'node-c', status: { phase: 'Failed' } }));
  snap = await waitFor('the IP change and the finished pod', () => {
    const v = source.snapshot()!;
    return v.pods.find((p) => p.name === 'a')?.ips[0]?.address === '10.240.0.20' && !v.pods.some((p) => p.name === 'c') && v;
  });
  t.same(snap.pods.find((p) => p.name === 'a')!.namedPorts, [{ name: 'serve-80', protocol: 'TCP', port: 80 }]);

  // Deletes.
  s.delete('networkpolicies', 'x', 'allow-from-y');
  s.delete('pods', 'y', 'b');
  s.delete('namespaces', undefined, 'z');
  snap = await waitFor('the deletes', () => {
    const v = source.snapshot()!;
    return v.policies.length === 1 && v.namespaces.length === 2 && v.pods.length === 1 && v;
  });
  t.same(names(snap, 'policies'), ['x/deny']);
  t.same(names(snap, 'pods'), ['x/a']);

  // 410: history compacted under the open watches; every collection relists, and a change made meanwhile is there.
  const listsBefore = s.requests.filter((q) => !q.watch && q.method === 'GET').length;
  s.compact();
  s.put(netpol('y', 'after-compaction', DENY_INGRESS));
  s.put(ns('x', { ns: 'x', moved: 'yes' }));
  snap = await waitFor('the relist', () => {
    const v = source.snapshot()!;
    return v.policies.length === 2 && v.namespaces.find((n) => n.name === 'x')?.labels.moved === 'yes' && v;
  });
  const relists = s.requests.filter((q) => !q.watch && q.method === 'GET').slice(listsBefore).map((q) => q.path).sort();
  t.same(relists, ['/api/v1/namespaces', '/api/v1/pods', '/apis/networking.k8s.io/v1/networkpolicies'], 'each collection listed again after 410');
  t.same(names(snap, 'policies'), ['x/deny', 'y/after-compaction']);
  const health = source.health();
  t.same(health.map((h) => h.resource).sort(), ['namespaces', 'networkpolicies', 'pods'], 'one health line per watch it runs');
  const watchQueries = s.requests.filter((q) => q.watch);
  t.ok(watchQueries.every((q) => q.query.allowWatchBookmarks === 'true' && q.query.timeoutSeconds), 'every watch asks for bookmarks and a timeoutSeconds');
  t.notOk(watchQueries.some((q) => q.path === '/api/v1/pods' && q.query.fieldSelector), 'the pod watch is cluster-wide');
});

t.test('policy source sharing the daemon\'s pod watch: one pod watch, both caches fed', async (t) => {
  const { s, api } = await startStandin(t);
  seed(s);
  s.put(netpol('x', 'allow-from-y', ALLOW_FROM_Y));
  const cache = new PodCache('node-a');
  const pods = new Reflector<KubeObject>({ source: api.podListWatch(), logger: log, backoff: FAST, onChange: (items, change) => void cache.update(items, change) });
  pods.start();
  t.teardown(() => pods.stop());
  const source = createKubernetesPolicySource(api, { logger: log, backoff: FAST, pods });
  await source.start();
  t.teardown(() => source.stop());
  await source.synced();
  t.same(names(source.snapshot(), 'pods'), ['x/a', 'y/b'], 'policy sees every node\'s pods');
  t.same(source.snapshot()!.policies.find((p) => p.metadata.name === 'allow-from-y')!.spec, ALLOW_FROM_Y, 'a listed policy (client-node\'s typed models) is the same plain spec as a watched one');
  t.ok(cache.lookup('x', 'a'), 'the node cache has this node\'s pod');
  t.equal(cache.lookup('y', 'b'), undefined, 'and not another node\'s');
  s.put(pod('x', 'n', { pod: 'n' }, '10.240.0.30'));
  await waitFor('the new pod in both', () => cache.lookup('x', 'n') && source.snapshot()!.pods.some((p) => p.name === 'n'));
  s.put(pod('x', 'a', { pod: 'a', v: '2' }, '10.240.0.10'));
  s.delete('pods', 'x', 'n');
  s.put(pod('y', 'b', { pod: 'b', v: '2' }, '10.240.1.11', { node: 'node-b' }));
  await waitFor('label change and delete in the node cache (one event at a time)', () => cache.lookup('x', 'a')?.labels.v === '2' && !cache.lookup('x', 'n'));
  await waitFor('and in the snapshot', () => source.snapshot()!.pods.find((p) => p.name === 'b')?.labels.v === '2');
  t.equal(cache.lookup('y', 'b'), undefined, 'another node\'s pod never enters the node cache');
  t.equal(s.requests.filter((q) => q.path === '/api/v1/pods' && !q.watch).length, 1, 'one pod list');
  t.equal(source.health().length, 2, 'the shared pod watch is its owner\'s to report');
  await source.stop();
  t.equal(pods.stats.synced, true, 'stopping the source leaves the shared watch running');
  s.put(pod('x', 'm', { pod: 'm' }, '10.240.0.31'));
  await waitFor('the shared watch still feeding its owner', () => cache.lookup('x', 'm'));
});

t.test('the daemon\'s integration with networkPolicy on: one cluster-wide pod watch, node cache and policy source both fed', async (t) => {
  const { s, port } = await startStandin(t);
  seed(s);
  const dir = mkdtempSync(path.join(tmpdir(), 'vnet-k8s-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const kubeconfig = path.join(dir, 'kubeconfig.json');
  writeFileSync(kubeconfig, JSON.stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': 'standin',
    clusters: [{ name: 'standin', cluster: { server: `http://127.0.0.1:${port}`, 'insecure-skip-tls-verify': true } }],
    users: [{ name: 'vnet-cni', user: { token: 'x' } }],
    contexts: [{ name: 'standin', context: { cluster: 'standin', user: 'vnet-cni' } }],
  }));
  const k8s = new KubernetesIntegration({ nodeName: 'node-a', kubeconfig, networkPolicy: true, backoff: FAST, conditionPeriodMs: 600_000, statusDebounceMs: 0, logger: log });
  let annotations = 0;
  // Just what the integration calls on the agent (no store, no dataplane in a unit test).
  const agent = {
    annotatePods: async () => {
      annotations++;
      return 0;
    },
    refresh: async () => {},
    status: async () => {},
    store: { peek: async () => ({ node: { config: {} }, endpoints: {}, ipam: {} }) },
  } as unknown as Agent;
  k8s.start(agent);
  t.teardown(() => k8s.stop());
  const source = k8s.policySource!;
  t.ok(source, 'policySource is there with networkPolicy on');
  await source.synced();
  t.same(names(source.snapshot(), 'pods'), ['x/a', 'y/b'], 'the snapshot has every node\'s pods');
  await waitFor('the node cache', () => k8s.pods.lookup('x', 'a'));
  t.equal(k8s.pods.lookup('y', 'b'), undefined, 'the node cache only this node\'s');
  const podWatches = s.requests.filter((q) => q.path === '/api/v1/pods');
  t.ok(podWatches.every((q) => q.query.fieldSelector === undefined), 'the pod list/watch is cluster-wide');
  t.equal(podWatches.filter((q) => !q.watch).length, 1, 'pods listed once for both consumers');
  const annotationsBefore = annotations;
  s.put(pod('y', 'other', { pod: 'o' }, '10.240.1.99', { node: 'node-b' }));
  await waitFor('the other node\'s pod in the snapshot', () => source.snapshot()!.pods.some((p) => p.name === 'other'));
  t.equal(annotations, annotationsBefore, 'another node\'s pod does not make the agent re-annotate');
  const stats = k8s.stats() as { networkPolicies?: { synced: boolean }; namespaces?: { synced: boolean }; watches: Array<{ resource: string }> };
  t.ok(stats.networkPolicies?.synced && stats.namespaces?.synced, 'DUMP shows the policy watches');
  t.same(stats.watches.map((w) => w.resource), ['nodenetworkconfig', 'pods', 'networkpolicies', 'namespaces'], 'one health line per watch, the pod watch once');
});
