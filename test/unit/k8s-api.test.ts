// The daemon's Kubernetes pieces against the stand-in API server on
// 127.0.0.1, through the real @kubernetes/client-node: the NodeNetworkConfig
// -> pool conversion, the list/watch reflector (live updates, resume after a
// dropped connection from the last resourceVersion, relist after 410 Gone in
// both forms, backoff on 500s), the coalesced status write-back, the node
// condition patch (kubelet's conditions kept) and the pod cache.
import t from 'tap';
import { pino } from 'pino';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadYaml } from '@kubernetes/client-node';
import { K8S_GROUP, K8S_VERSION, NNC_KIND, NNC_PLURAL } from '../../control/k8s/constants.js';
import { CniCode, PoolSourceError, TryAgainError } from '../../control/errors.js';
import { poolFromNnc, type NncObject } from '../../control/k8s/nnc-pool.js';
import type { KubeObject } from '../../control/k8s/kube-api.js';
import { Reflector } from '../../control/k8s/reflector.js';
import { StatusWriter, type NncStatus } from '../../control/k8s/status-writer.js';
import { ConditionReporter } from '../../control/k8s/node-condition.js';
import { CachedPoolSource } from '../../control/k8s/cached-pool-source.js';
import { PodCache } from '../../control/k8s/pod-cache.js';
import { Backoff } from '../../control/k8s/backoff.js';
import type { KubeObj } from '../../lab/kube-standin.js';
import { startStandin, waitFor } from './k8s-standin-helper.js';

const log = pino({ level: 'silent' });
const FAST = { initialMs: 40, maxMs: 320, maxErrors: 4 };
const NS = 'kube-system';
const NODE = 'node-a';

function nnc(secondaryIPs: string[], extra: Record<string, unknown> = {}): KubeObj {
  return {
    apiVersion: 'vnetcni.dev/v1alpha1', kind: 'NodeNetworkConfig', metadata: { name: NODE, namespace: NS },
    spec: { primaryIP: '10.240.0.4', subnet: '10.240.0.0/16', secondaryIPs, ...extra },
  };
}

t.test('NodeNetworkConfig -> pool: the same rules as the other sources', async (t) => {
  const pool = poolFromNnc(nnc(['10.240.0.9', '10.240.0.5', '10.240.0.6'], { macAddress: '00-0D-3A-01-02-03' }) as NncObject);
  t.same(pool, { mac: '00:0d:3a:01:02:03', primaryIp: '10.240.0.4', subnet: '10.240.0.0/16', prefixLength: 16, gateway: '10.240.0.1', addresses: ['10.240.0.5', '10.240.0.6', '10.240.0.9'] });
  t.equal(poolFromNnc(nnc([]) as NncObject).mac, '*', 'no MAC: the pool fits the NIC whatever its MAC');
  t.equal(poolFromNnc(nnc(['10.240.0.5'], { gateway: '10.240.0.254' }) as NncObject).gateway, '10.240.0.254');
  const bad: [string[], Record<string, unknown>, RegExp][] = [
    [['10.241.0.5'], {}, /secondaryIPs\[0\] 10.241.0.5 is outside 10.240.0.0\/16/],
    [['10.240.0.1'], {}, /is the gateway/],
    [['10.240.0.4'], {}, /is the primary IP/],
    [['10.240.0.0'], {}, /network or broadcast/],
    [['10.240.255.255'], {}, /network or broadcast/],
    [['10.240.0.5', '10.240.0.5'], {}, /appears twice/],
    [['nope'], {}, /is not an IPv4 address/],
    [[], { subnet: '10.240.0.0/31' }, /too small/],
    [[], { primaryIP: '10.9.0.4' }, /primaryIP 10.9.0.4 is outside/],
    [[], { macAddress: 'zz' }, /macAddress "zz" is not a MAC/],
  ];
  for (const [ips, extra, re] of bad) {
    t.throws(() => poolFromNnc(nnc(ips, extra) as NncObject), re, String(re));
  }
  t.throws(() => poolFromNnc({ metadata: { name: 'x' } }), PoolSourceError);
});

t.test('the cached pool source fails fast with code 11 before the first sync', async (t) => {
  const source = new CachedPoolSource('NodeNetworkConfig kube-system/node-a');
  const err = await source.fetch().catch((e: unknown) => e);
  t.type(err, TryAgainError);
  t.equal((err as TryAgainError).cniCode, CniCode.TryAgainLater);
  t.match((err as Error).message, /not synced from the Kubernetes API yet/);
  source.set(poolFromNnc(nnc(['10.240.0.5']) as NncObject));
  t.same((await source.fetch())[0]!.addresses, ['10.240.0.5']);
});

t.test('backoff doubles with jitter up to the cap', async (t) => {
  const lo = new Backoff({ initialMs: 100, maxMs: 1000, maxErrors: 10 }, () => 0);
  const hi = new Backoff({ initialMs: 100, maxMs: 1000, maxErrors: 10 }, () => 1);
  t.same([1, 2, 3, 4, 5, 6].map(() => lo.next()), [50, 100, 200, 400, 500, 500], 'lowest draw: half the ceiling');
  t.same([1, 2, 3, 4, 5, 6].map(() => hi.next()), [100, 200, 400, 800, 1000, 1000], 'highest draw: the ceiling, capped');
});

t.test('reflector: list, live updates, resume after a drop, relist after 410, backoff on 500s', async (t) => {
  const { s, api } = await startStandin(t);
  s.put(nnc(['10.240.0.5']));
  let seen: string[] = [];
  const r = new Reflector({
    source: api.nncListWatch(NS, NODE), logger: log, backoff: FAST,
    onChange: (items) => {
      const obj = [...items.values()][0] as NncObject | undefined;
      seen = obj ? poolFromNnc(obj).addresses : [];
    },
  });
  r.start();
  t.teardown(() => r.stop());
  await r.synced();
  t.same(seen, ['10.240.0.5'], 'first list');
  await waitFor('the watch', () => s.openWatches === 1);
  const firstWatch = s.requests.find((q) => q.watch)!;
  t.equal(firstWatch.query.allowWatchBookmarks, 'true', 'bookmarks asked for');
  t.equal(firstWatch.query.fieldSelector, `metadata.name=${NODE}`, 'only this node\'s object');

  s.put(nnc(['10.240.0.5', '10.240.0.6']));
  await waitFor('the live update', () => seen.length === 2);
  t.pass('an update arrives over the watch');

  // A bookmark moves the resume point without an object change.
  s.put({ ...nnc([]), kind: 'Pod', apiVersion: 'v1', metadata: { name: 'unrelated', namespace: 'default' }, spec: { nodeName: 'other' } });
  s.bookmarkNow();
  await waitFor('the bookmark', () => r.stats.lastResourceVersion === String(s.resourceVersion));
  t.pass('bookmark advanced the resourceVersion');

  // Dropped connection: an update made while disconnected is not missed, and the watch resumes from the last RV (no relist).
  const rvBefore = r.stats.lastResourceVersion;
  const listsBefore = r.stats.lists;
  const mark = s.requests.length;
  s.dropWatches();
  s.put(nnc(['10.240.0.5', '10.240.0.6', '10.240.0.7']));
  await waitFor('the update made during the drop', () => seen.length === 3);
  const resumed = s.requests.slice(mark).filter((q) => q.watch);
  t.ok(resumed.length >= 1, 'watched again');
  t.equal(resumed[0]!.query.resourceVersion, rvBefore, 'resumed from the last resourceVersion seen');
  t.equal(r.stats.lists, listsBefore, 'no relist after a plain drop');
  t.notOk(s.requests.slice(mark).some((q) => !q.watch && q.method === 'GET'), 'the stand-in saw no list request');

  // 410 as an ERROR event (compaction under an open watch): relist, and the change made meanwhile is there.
  const mark2 = s.requests.length;
  s.compact();
  s.put(nnc(['10.240.0.8']));
  await waitFor('relist after 410', () => seen.length === 1 && seen[0] === '10.240.0.8');
  t.equal(r.stats.relists410, 1, 'one relist because of 410');
  t.ok(s.requests.slice(mark2).some((q) => !q.watch && q.method === 'GET'), 'the stand-in saw the list');

  // 410 as HTTP status on the watch request (resume from a compacted RV).
  s.goneAsHttp = true;
  s.dropWatches();
  s.compact();
  s.put(nnc(['10.240.0.9']));
  s.compact();
  await waitFor('relist after HTTP 410', () => seen[0] === '10.240.0.9');
  t.ok(s.requests.some((q) => q.watch && q.status === 410), 'a watch got HTTP 410');
  t.ok(r.stats.relists410 >= 2, 'relisted again');
  s.goneAsHttp = false;

  // API server failing: backoff with growing gaps, then recovery.
  const errorsBefore = r.stats.errors;
  const mark3 = s.requests.length;
  s.failNext(4);
  s.dropWatches();
  s.put(nnc(['10.240.0.10']));
  await waitFor('recovery after 500s', () => seen[0] === '10.240.0.10');
  const failed = s.requests.slice(mark3).filter((q) => q.status === 500);
  t.equal(failed.length, 4, 'four requests failed with 500');
  t.ok(r.stats.errors - errorsBefore >= 4, 'the reflector counted the errors and retried');
});

t.test('status write-back: coalesced, JSON patch on the status subresource, retried on failure', async (t) => {
  const { s, api } = await startStandin(t);
  s.put(nnc(['10.240.0.5', '10.240.0.6']));
  let current: NncStatus = { allocated: 0, free: 2, allocations: [] };
  const w = new StatusWriter({ debounceMs: 100, logger: log, backoff: FAST, compute: async () => current, write: (st) => api.patchNncStatus(NS, NODE, st) });
  t.teardown(() => w.stop());
  const mark = s.requests.length;
  for (let i = 0; i < 50; i++) {
    current = { allocated: 1, free: 1, allocations: [{ ip: '10.240.0.5', containerID: `c${i}`, ifName: 'eth0', podNamespace: 'default', podName: `p${i}` }] };
    w.markDirty();
  }
  await waitFor('the write', () => w.stats.writes === 1);
  await w.flush();
  const patches = s.requests.slice(mark).filter((q) => q.method === 'PATCH');
  t.equal(patches.length, 1, '50 changes, one PATCH');
  t.equal(patches[0]!.path, `/apis/vnetcni.dev/v1alpha1/namespaces/${NS}/nodenetworkconfigs/${NODE}/status`, 'the status subresource');
  t.equal(patches[0]!.contentType, 'application/json-patch+json');
  t.same(s.get('nodenetworkconfigs', NS, NODE)!.status, current, 'the last state is what the object shows');
  t.same((s.get('nodenetworkconfigs', NS, NODE)!.spec as { secondaryIPs: string[] }).secondaryIPs, ['10.240.0.5', '10.240.0.6'], 'spec untouched');

  w.markDirty();
  await new Promise((r) => setTimeout(r, 300));
  t.equal(s.requests.slice(mark).filter((q) => q.method === 'PATCH').length, 1, 'an unchanged status is not written again');

  s.failNext(2);
  current = { allocated: 0, free: 2, allocations: [] };
  w.markDirty();
  await waitFor('the retried write', () => w.stats.writes === 2);
  t.equal(w.stats.failures, 2, 'two failures, then success');
  t.same(s.get('nodenetworkconfigs', NS, NODE)!.status, current);
});

t.test('node condition: strategic merge keeps kubelet\'s conditions; flips on readiness changes only', async (t) => {
  const { s, api } = await startStandin(t);
  s.put({ apiVersion: 'v1', kind: 'Node', metadata: { name: NODE }, spec: {}, status: { conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'kubelet is posting ready status' }] } });
  let ready = true;
  const c = new ConditionReporter({ periodMs: 60_000, logger: log, check: async () => ({ ready, message: ready ? '' : 'host interface eth0 not found' }), patch: (cond) => api.patchNodeCondition(NODE, cond) });
  const condition = (type: string): Record<string, string> | undefined =>
    ((s.get('nodes', undefined, NODE)!.status as { conditions: Record<string, string>[] }).conditions).find((x) => x.type === type);
  await c.poke();
  t.match(condition('NetworkUnavailable'), { status: 'False', reason: 'VnetCniReady' });
  t.match(condition('Ready'), { status: 'True', reason: 'KubeletReady' }, 'kubelet\'s condition kept');
  t.equal(s.requests.at(-1)!.contentType, 'application/strategic-merge-patch+json');
  t.equal(s.requests.at(-1)!.path, `/api/v1/nodes/${NODE}/status`);
  await c.poke();
  t.equal(c.stats.patches, 1, 'no change, no patch');
  ready = false;
  await c.poke();
  t.match(condition('NetworkUnavailable'), { status: 'True', reason: 'VnetCniNotReady', message: 'host interface eth0 not found' });
  s.failNext(1);
  ready = true;
  await c.poke();
  t.equal(c.stats.failures, 1, 'a failed patch is counted');
  t.match(condition('NetworkUnavailable'), { status: 'True' }, 'still True after the failed patch');
  await c.poke();
  t.match(condition('NetworkUnavailable'), { status: 'False' }, 'retried on the next check');
  t.equal((s.get('nodes', undefined, NODE)!.status as { conditions: unknown[] }).conditions.length, 2, 'two conditions, no duplicates');
  await c.stop();
});

t.test('pod cache: only this node\'s pods, UID and labels, updates live', async (t) => {
  const { s, api } = await startStandin(t);
  const pod = (name: string, node: string, labels: Record<string, string>): KubeObj => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'web', labels }, spec: { nodeName: node } });
  const a = s.put(pod('a', NODE, { app: 'a' }));
  s.put(pod('b', 'node-b', { app: 'b' }));
  const cache = new PodCache();
  const r = new Reflector<KubeObject>({ source: api.podListWatch(NODE), logger: log, backoff: FAST, onChange: (items) => cache.update(items) });
  r.start();
  t.teardown(() => r.stop());
  await r.synced();
  t.same(cache.lookup('web', 'a'), { uid: a.metadata.uid, labels: { app: 'a' } });
  t.equal(cache.lookup('web', 'b'), undefined, 'another node\'s pod is not listed');
  const c = s.put(pod('c', NODE, { app: 'c', tier: 'front' }));
  await waitFor('pod c', () => cache.lookup('web', 'c'));
  t.same(cache.lookup('web', 'c'), { uid: c.metadata.uid, labels: { app: 'c', tier: 'front' } });
  s.delete('pods', 'web', 'a');
  await waitFor('pod a gone', () => cache.lookup('web', 'a') === undefined);
  t.pass('a deleted pod leaves the cache');
  t.equal(s.requests.find((q) => q.path === '/api/v1/pods' && !q.watch)?.query.fieldSelector, `spec.nodeName=${NODE}`);
});

/** The part of an OpenAPI v3 schema the CRD checks read. */
interface Schema {
  properties?: Record<string, Schema>;
  required?: string[];
  pattern?: string;
  items?: Schema;
}

/** The part of a CustomResourceDefinition the CRD checks read. */
interface Crd {
  apiVersion: string;
  metadata: { name: string };
  spec: { versions: { name: string; served: boolean; storage: boolean; subresources?: unknown; schema: { openAPIV3Schema: Schema } }[] };
}

/** A schema's property, or a thrown error naming the missing one. */
function field(s: Schema | undefined, name: string): Schema {
  const f = s?.properties?.[name];
  if (!f) throw new Error(`the CRD schema has no property ${name}`);
  return f;
}

t.test('the CRD manifest matches the constants and the contract', async (t) => {
  const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  const crd = loadYaml<Crd>(readFileSync(path.join(repo, 'docker', 'manifests', 'crd-nodenetworkconfig.yaml'), 'utf8'));
  t.equal(crd.apiVersion, 'apiextensions.k8s.io/v1');
  t.equal(crd.metadata.name, `${NNC_PLURAL}.${K8S_GROUP}`);
  t.match(crd.spec, { group: K8S_GROUP, scope: 'Namespaced', names: { kind: NNC_KIND, plural: NNC_PLURAL, singular: 'nodenetworkconfig', shortNames: ['nnc'] } });
  const v = crd.spec.versions.find((x) => x.name === K8S_VERSION);
  t.ok(v?.served && v.storage, 'the version is served and stored');
  if (!v) return;
  t.same(v.subresources, { status: {} }, 'status subresource on');
  const spec = field(v.schema.openAPIV3Schema, 'spec');
  const status = field(v.schema.openAPIV3Schema, 'status');
  t.same(Object.keys(spec.properties ?? {}).sort(), ['gateway', 'macAddress', 'primaryIP', 'secondaryIPs', 'subnet']);
  t.same(spec.required, ['primaryIP', 'subnet', 'secondaryIPs']);
  t.same(Object.keys(status.properties ?? {}).sort(), ['allocated', 'allocations', 'conditions', 'free', 'observedGeneration']);
  t.same(Object.keys(field(status, 'allocations').items?.properties ?? {}).sort(), ['containerID', 'ifName', 'ip', 'podName', 'podNamespace', 'podUID']);
  // a missing pattern compiles to one that matches nothing, so the check fails rather than passes
  t.ok(new RegExp(field(spec, 'subnet').pattern ?? '(?!)').test('10.240.0.0/16'), 'the subnet pattern takes a CIDR');
  t.ok(new RegExp(field(spec, 'macAddress').pattern ?? '(?!)').test('00-0D-3A-01-02-03'), 'the MAC pattern takes Azure\'s spelling');
});
