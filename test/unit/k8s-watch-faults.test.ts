// The reflector and KubeApi.watch under the faults a real API server produces
// (issue 16), against the stand-in on 127.0.0.1 through the real
// @kubernetes/client-node, with the time constants shrunk so each case runs
// in about a second:
//   - ERROR events with a non-410 Status: every one is a failure, the gaps
//     between watch requests follow the backoff (lower bounds only: load can
//     only make them longer), no hot loop; recovery when the fault clears;
//   - connection resets with bookmarks between them: the streak is 1 after
//     each reset, never 2 or 3;
//   - a watch open past healthyAfterMs ends the streak with no event at all;
//   - a request accepted and never answered: torn down at the headers
//     deadline, its connection closed, the update made meanwhile delivered;
//   - a stream that goes silent after its headers and ignores timeoutSeconds:
//     torn down at timeoutSeconds + margin and re-established;
//   - the per-watch health line (`vnetctl debug kubernetes`) and metrics.
import t from 'tap';
import { pino } from 'pino';
import { Reflector, type ReflectorTiming } from '../../control/k8s/reflector.js';
import type { KubeObject, ListWatch } from '../../control/k8s/kube-api.js';
import { poolFromNnc, type NncObject } from '../../control/k8s/nnc-pool.js';
import { renderKubernetes } from '../../control/debug/views/kubernetes.js';
import { DaemonMetrics } from '../../control/daemon/metrics.js';
import type { NodeState } from '../../control/store/node-store.js';
import type { KubeObj, LoggedRequest } from '../../lab/kube-standin.js';
import { startStandin, waitFor } from './k8s-standin-helper.js';

const log = pino({ level: 'silent' });
const NS = 'kube-system';
const NODE = 'node-a';
const BACKOFF = { initialMs: 40, maxMs: 640, maxErrors: 5 };

function nnc(secondaryIPs: string[]): KubeObj {
  return {
    apiVersion: 'vnetcni.dev/v1alpha1', kind: 'NodeNetworkConfig', metadata: { name: NODE, namespace: NS },
    spec: { primaryIP: '10.240.0.4', subnet: '10.240.0.0/16', secondaryIPs },
  };
}

function poolWatcher(source: ListWatch<NncObject & KubeObject>, timing: Partial<ReflectorTiming> = {}): { r: Reflector<NncObject & KubeObject>; seen: { addresses: string[] } } {
  const seen: { addresses: string[] } = { addresses: [] };
  const r = new Reflector<NncObject & KubeObject>({
    source, logger: log, backoff: BACKOFF, timing: { healthyAfterMs: 60_000, closedAtOnceMs: 100, ...timing },
    onChange: (items) => {
      const obj = [...items.values()][0];
      seen.addresses = obj ? poolFromNnc(obj).addresses : [];
    },
  });
  return { r, seen };
}

const watchesSince = (requests: LoggedRequest[], mark: number): LoggedRequest[] => requests.slice(mark).filter((q) => q.watch);

t.test('watch ERROR events (500): each one a failure, backoff between re-watches, recovery when they stop', async (t) => {
  const { s, api } = await startStandin(t);
  s.put(nnc(['10.240.0.5']));
  s.injectWatchFault({ kind: 'error', code: 500, count: Infinity });
  const { r, seen } = poolWatcher(api.nncListWatch(NS, NODE));
  const mark = s.requests.length;
  r.start();
  t.teardown(() => r.stop());
  await r.synced();
  await waitFor('five failures in a row', () => r.stats.failures >= 5);
  const watches = watchesSince(s.requests, mark);
  t.ok(watches.length <= r.stats.errorEvents + 1, `${watches.length} watch requests for ${r.stats.errorEvents} ERROR events: one re-watch per backoff step, no hot loop`);
  t.ok(watches.every((q) => q.fault === 'error'), 'every watch got the ERROR event');
  t.equal(r.stats.failures, r.stats.errorEvents, 'the streak counts every ERROR event (an ERROR is not a healthy event)');
  t.equal(r.stats.lists, 1, 'a non-410 ERROR resumes the watch, no relist');
  // Step k waits at least half of min(max, initial * 2^(k-1)); timestamps are whole ms.
  for (let k = 1; k < Math.min(watches.length, 5); k++) {
    const lower = Math.min(BACKOFF.maxMs, BACKOFF.initialMs * 2 ** (k - 1)) / 2;
    const gap = watches[k]!.at - watches[k - 1]!.at;
    t.ok(gap >= lower - 1, `gap ${k}: ${gap} ms >= ${lower} ms`);
  }
  const errorsBefore = r.stats.errors;
  s.clearFaults();
  s.put(nnc(['10.240.0.5', '10.240.0.6']));
  await waitFor('the update after the fault cleared', () => seen.addresses.length === 2);
  await waitFor('the streak reset', () => r.stats.failures === 0);
  t.ok(r.stats.errors - errorsBefore <= 1, 'at most the watch in flight failed after the fault cleared');
});

t.test('connection resets with bookmarks between them: the streak ends at each bookmark', async (t) => {
  const { s, api } = await startStandin(t);
  s.put(nnc(['10.240.0.5']));
  const { r } = poolWatcher(api.nncListWatch(NS, NODE));
  r.start();
  t.teardown(() => r.stop());
  await r.synced();
  await waitFor('the watch', () => s.openWatches === 1 && r.stats.watchOpen);
  const streaks: number[] = [];
  for (let i = 0; i < 3; i++) {
    const errors = r.stats.errors;
    const mark = s.requests.length;
    t.equal(s.resetWatches(), 1, `reset ${i + 1}`);
    await waitFor('the failure', () => r.stats.errors > errors);
    streaks.push(r.stats.failures);
    await waitFor('the watch again', () => watchesSince(s.requests, mark).length >= 1 && s.openWatches === 1 && r.stats.watchOpen);
    s.bookmarkNow();
    await waitFor('the bookmark ends the streak', () => r.stats.failures === 0);
  }
  t.same(streaks, [1, 1, 1], 'each reset is failure 1 of a new streak, not 1, 2, 3');
  t.equal(r.stats.lists, 1, 'resumed from the bookmark each time, never relisted');
  t.equal(r.health().failures, 0);
});

t.test('a watch open past healthyAfterMs ends the streak with no event at all', async (t) => {
  const { s, api } = await startStandin(t);
  s.put(nnc(['10.240.0.5']));
  const { r } = poolWatcher(api.nncListWatch(NS, NODE), { healthyAfterMs: 300 });
  r.start();
  t.teardown(() => r.stop());
  await r.synced();
  await waitFor('the watch', () => s.openWatches === 1);
  s.failNext(3);
  s.dropWatches();
  await waitFor('three failures', () => r.stats.failures >= 3);
  const lastEvent = r.stats.lastEventAt;
  await waitFor('the watch open again', () => s.openWatches === 1);
  await waitFor('the streak reset by time', () => r.stats.failures === 0);
  t.equal(r.stats.lastEventAt, lastEvent, 'no event came: the open watch alone reset the streak');
});

t.test('a watch accepted and never answered is torn down at the headers deadline; the update made meanwhile arrives', async (t) => {
  const headersTimeoutMs = 300;
  const { s, api } = await startStandin(t, { timing: { headersTimeoutMs } });
  s.put(nnc(['10.240.0.5']));
  const { r, seen } = poolWatcher(api.nncListWatch(NS, NODE));
  r.start();
  t.teardown(() => r.stop());
  await r.synced();
  await waitFor('the watch', () => s.openWatches === 1);
  s.bookmarkNow();
  await waitFor('the bookmark', () => r.stats.lastResourceVersion === String(s.resourceVersion));
  const mark = s.requests.length;
  s.injectWatchFault({ kind: 'hang', count: 1 });
  s.dropWatches();
  await waitFor('the hung request', () => s.heldRequests === 1);
  s.put(nnc(['10.240.0.5', '10.240.0.6']));
  // The bound: the headers deadline plus one backoff step (the streak was 0), plus slack for a loaded machine.
  await waitFor('the update after the hang', () => seen.addresses.length === 2, headersTimeoutMs + BACKOFF.initialMs + 10_000);
  t.equal(r.stats.headerTimeouts, 1, 'one watch torn down for its missing headers');
  await waitFor('the hung connection closed by the client', () => s.heldClosed === 1);
  const watches = watchesSince(s.requests, mark);
  t.same(watches.map((q) => q.fault ?? 'ok'), ['hang', 'ok'], 'one hung watch, then one that works');
  // Both times are the stand-in's; the client's deadline started a little before the hung request arrived, hence half.
  t.ok(watches[1]!.at - watches[0]!.at >= headersTimeoutMs / 2, `the hung request was held until its deadline (${watches[1]!.at - watches[0]!.at} ms), not dropped at once`);
  t.equal(watches[1]!.query.resourceVersion, watches[0]!.query.resourceVersion, 'resumed from the same resourceVersion, no relist');
  t.equal(r.stats.lists, 1);
});

t.test('a stream silent after its headers is torn down at timeoutSeconds + margin and re-established', async (t) => {
  const lifeMarginMs = 300;
  const { s, api } = await startStandin(t, { timing: { timeoutSeconds: () => 1, lifeMarginMs } });
  s.put(nnc(['10.240.0.5']));
  let lifeTimeoutsAtUpdate = -1;
  const { r, seen } = poolWatcher(api.nncListWatch(NS, NODE));
  const mark = s.requests.length;
  s.injectWatchFault({ kind: 'stall', count: 1 });
  r.start();
  t.teardown(() => r.stop());
  await r.synced();
  await waitFor('the stalled watch', () => s.heldRequests === 1);
  t.equal(watchesSince(s.requests, mark)[0]!.query.timeoutSeconds, '1', 'timeoutSeconds sent');
  s.put(nnc(['10.240.0.5', '10.240.0.6']));
  await waitFor('the update', () => {
    if (seen.addresses.length !== 2) return false;
    lifeTimeoutsAtUpdate = r.stats.lifeTimeouts;
    return true;
  }, 1000 + lifeMarginMs + 10_000);
  t.equal(lifeTimeoutsAtUpdate, 1, 'the update came after the stalled watch was torn down');
  await waitFor('the stalled connection closed by the client', () => s.heldClosed === 1);
  t.equal(r.stats.errors, 0, 'outliving the bound is not an error (no backoff)');
  t.equal(r.stats.lists, 1, 'resumed from the resourceVersion, no relist');
});

t.test('a list accepted and never answered: the request and its socket are torn down at the unary deadline, then the reflector retries', async (t) => {
  const { s, api } = await startStandin(t, { apiTimeoutMs: 300 });
  s.put(nnc(['10.240.0.5']));
  s.hangLists(1);
  const err = await api.nncListWatch(NS, NODE).list().catch((e: unknown) => e);
  t.match(err, { cniCode: 11, message: /list NodeNetworkConfigs took longer than 300 ms/ }, 'a retryable error naming the call');
  await waitFor('the hung list closed by the client', () => s.heldClosed === 1);
  s.hangLists(1);
  const { r, seen } = poolWatcher(api.nncListWatch(NS, NODE));
  r.start();
  t.teardown(() => r.stop());
  await r.synced();
  t.same(seen.addresses, ['10.240.0.5'], 'listed on the retry');
  t.equal(r.stats.errors, 1, 'the hung list was one failure');
  await waitFor('both hung lists closed', () => s.heldClosed === 2);
});

t.test('per-watch health: debug line and metrics', async (t) => {
  const { s, api } = await startStandin(t);
  s.put(nnc(['10.240.0.5']));
  const { r } = poolWatcher(api.nncListWatch(NS, NODE));
  r.start();
  t.teardown(() => r.stop());
  await r.synced();
  await waitFor('the watch', () => r.stats.watchOpen);
  s.bookmarkNow();
  await waitFor('the bookmark', () => r.stats.lastResourceVersion === String(s.resourceVersion));
  const h = r.health();
  t.match(h, { resource: 'nodenetworkconfig', describe: `NodeNetworkConfig ${NS}/${NODE}`, state: 'open', failures: 0 });
  t.ok(typeof h.ageSeconds === 'number' && typeof h.lastEventAgoSeconds === 'number', 'age and last event known');
  const text = renderKubernetes({ enabled: true, stats: { nodeNetworkConfig: { lists: 1 } }, watches: [h, { resource: 'pods', describe: 'pods on node x', state: 'none', failures: 3 }] });
  t.match(text, /^watch nodenetworkconfig: open \d+(\.\d)?s, last event \d+(\.\d)?s ago, failure streak 0$/m);
  t.match(text, /^watch pods: no watch \(backing off or listing\), last event never, failure streak 3$/m);
  const metrics = new DaemonMetrics({ state: async (): Promise<NodeState> => { throw new Error('no node state in this test'); }, watches: () => [h] });
  const body = await metrics.render();
  t.match(body, /vnet_cni_kubernetes_watch_failure_streak\{watch="nodenetworkconfig"\} 0/);
  t.match(body, /vnet_cni_kubernetes_watch_age_seconds\{watch="nodenetworkconfig"\} \d/);
  t.match(body, /vnet_cni_kubernetes_watch_last_event_timestamp_seconds\{watch="nodenetworkconfig"\} \d{10}/);
});
