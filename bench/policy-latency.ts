// Scenario "policy-latency": a NetworkPolicy change in the API server → the
// node's policy programmed, at the scale (N policies x 250 local
// endpoints x 5,000 cluster pods in 20 namespaces, the world of
// bench/policy-compile.ts), through the daemon's own parts: the Kubernetes
// stand-in on loopback (lab/kube-standin.ts, the only stand-in), the real
// @kubernetes/client-node watches, KubernetesPolicySource, PolicyEngine, and
// an apply that runs the ebpf dataplane's compile of every changed direction
// (control/dataplane/ebpf/policy.ts compileDirection: what
// Dataplane.applyPolicies computes before its map writes). Not included: the
// kernel map writes themselves (docs/benchmarks.md "NetworkPolicy, ebpf
// dataplane" measures those) and a real API server's network.
//
// Rows per policy count (0, 100, 1,000 other policies):
//  - policy change: one policy selecting 3 of the local endpoints is updated
//    (its port alternates), from the PUT to the end of the apply that carries
//    the new port;
//  - pod churn: a pod on another node is created (then deleted) in a
//    namespace that half the policies' namespace selectors name, from the PUT
//    to the end of the apply that adds (removes) its address;
//  - the engine's own histogram (vnet_cni_policy_sync_seconds: first
//    unsynced change → apply done), and RSS/heap of this process (engine,
//    source, client, and the in-process stand-in holding every object).
import v8 from 'node:v8';
import vm from 'node:vm';
import { pino } from 'pino';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeApi } from '../control/k8s/kube-api.js';
import { createKubernetesPolicySource } from '../control/k8s/policy-source.js';
import { compileDirection } from '../control/dataplane/ebpf/policy.js';
import { PolicyEngine } from '../control/policy/engine.js';
import type { EndpointPolicy, NetworkPolicy } from '../control/policy/types.js';
import { KubeStandin, type KubeObj } from '../lab/kube-standin.js';
import type { BenchOptions } from './lib/options.js';
import { median, quantile } from './lib/stats.js';
import { targetText, type Row } from './lib/table.js';
import { world } from './policy-compile.js';

const ENDPOINTS = 250;
const PODS = 5000;
/** A sample that takes longer than this is a broken run, not a slow one. */
const SAMPLE_TIMEOUT_MS = 120_000;

export function podObj(p: { namespace: string; name: string; labels: Record<string, string>; ips: Array<{ address: string }> }): KubeObj {
  return {
    apiVersion: 'v1', kind: 'Pod', metadata: { namespace: p.namespace, name: p.name, labels: p.labels },
    spec: { nodeName: 'other', containers: [{ name: 'c', image: 'x', ports: [{ name: 'http', containerPort: 8080 }] }] },
    status: { phase: 'Running', podIP: p.ips[0]!.address, podIPs: [{ ip: p.ips[0]!.address }] },
  };
}

export function policyObj(np: NetworkPolicy): KubeObj {
  return { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace: np.metadata.namespace, name: np.metadata.name }, spec: np.spec };
}

/** The measured policy: selects app0 in ns0 (local endpoints p0, p100, p200), ingress from the web tier on `port`. */
export function measured(port: number): KubeObj {
  return policyObj({
    metadata: { namespace: 'ns0', name: 'measured' },
    spec: { podSelector: { matchLabels: { app: 'app0' } }, ingress: [{ from: [{ podSelector: { matchLabels: { tier: 'web' } } }], ports: [{ port }] }] },
  });
}

/** A full GC, so that heap figures are what is retained (the flag is set at run time; benches are not started with it). */
function collectGarbage(): void {
  v8.setFlagsFromString('--expose-gc');
  (vm.runInNewContext('gc') as () => void)();
}

interface Waiter {
  test: (changed: EndpointPolicy[]) => boolean;
  resolve: () => void;
}

export async function runPolicyLatency(opts: BenchOptions): Promise<Row[]> {
  const rows: Row[] = [];
  // Largest first: its RSS is then that of a fresh process (V8 keeps what an earlier size grew).
  const sizes = opts.quick ? [100, 0] : [1000, 100, 0];
  const samples = opts.quick ? 10 : 40;
  const podSamples = opts.quick ? 3 : 8;
  for (const n of sizes) {
    const s = new KubeStandin(0);
    const port = await s.listen();
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'standin', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
      users: [{ name: 'bench', token: 'bench' }],
      contexts: [{ name: 'standin', cluster: 'standin', user: 'bench' }],
      currentContext: 'standin',
    });
    const { snap, locals } = world(n, PODS, ENDPOINTS);
    for (const ns of snap.namespaces) s.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns.name, labels: ns.labels } });
    for (const p of snap.pods) s.put(podObj(p));
    for (const np of snap.policies) s.put(policyObj(np));
    s.put(measured(80));
    const source = createKubernetesPolicySource(new KubeApi(kc, 30_000), { logger: pino({ level: 'silent' }) });
    const waiters = new Set<Waiter>();
    const histogram: number[] = [];
    let applied = 0;
    let applyMs: number[] = [];
    const engine = new PolicyEngine({
      source,
      ownsSource: false,
      apply: async (changed) => {
        // The CPU part of the ebpf dataplane's apply: one compile per distinct direction.
        const a0 = performance.now();
        const seen = new Set<object>();
        for (const e of changed) {
          for (const d of [e.ingress, e.egress]) {
            if (seen.has(d)) continue;
            seen.add(d);
            compileDirection(d);
          }
        }
        applyMs.push(performance.now() - a0);
        applied += changed.length;
        for (const w of waiters) {
          if (!w.test(changed)) continue;
          waiters.delete(w);
          w.resolve();
        }
      },
      onSyncLatency: (seconds) => histogram.push(seconds * 1000),
    });
    const change = async (put: () => void, test: Waiter['test']): Promise<number> => {
      let timer: NodeJS.Timeout | undefined;
      const done = new Promise<void>((resolve, reject) => {
        waiters.add({ test, resolve });
        timer = setTimeout(() => reject(new Error('policy-latency: no apply within the sample timeout')), SAMPLE_TIMEOUT_MS);
      });
      const t0 = performance.now();
      put();
      await done;
      clearTimeout(timer);
      return performance.now() - t0;
    };
    try {
      collectGarbage();
      const rss0 = process.memoryUsage().rss;
      await source.start();
      await source.synced();
      for (const ep of locals) engine.addEndpoint(ep);
      const t0 = performance.now();
      await engine.start();
      const firstSync = performance.now() - t0;
      histogram.length = 0;
      applyMs = [];
      const policyMs: number[] = [];
      for (let i = 1; i <= samples; i++) {
        const p = i % 2 === 0 ? 80 : 81;
        policyMs.push(await change(() => s.put(measured(p)), (c) => c.some((e) => e.address === locals[0]!.address && e.ingress.rules.some((r) => r.ports?.some((x) => x.port === p)))));
      }
      // ADD: the policy a new endpoint starts with, from the engine's compiler (its pod is in the snapshot).
      const addMs: number[] = [];
      for (let i = 0; i < samples; i++) {
        const p = snap.pods[ENDPOINTS + i]!;
        const a0 = performance.now();
        engine.policyFor({ family: 'ipv4', address: p.ips[0]!.address, namespace: p.namespace, name: p.name });
        addMs.push(performance.now() - a0);
      }
      await engine.idle();
      const policyHist = histogram.splice(0);
      const policyApply = applyMs.splice(0);
      const podMs: number[] = [];
      for (let i = 0; i < podSamples; i++) {
        const ip = `10.99.${i >> 8}.${i & 255}`;
        const pod = { namespace: 'ns1', name: `churn${i}`, labels: { app: 'app1', tier: 'web' }, ips: [{ address: ip }] };
        const has = (e: EndpointPolicy): boolean => JSON.stringify(e.ingress).includes(`"${ip}/32"`) || JSON.stringify(e.egress).includes(`"${ip}/32"`);
        // Policies name ns1 by its team only with 100+ policies; with none, nothing changes and there is nothing to wait for.
        if (n === 0) break;
        podMs.push(await change(() => s.put(podObj(pod)), (c) => c.some(has)));
        podMs.push(await change(() => s.delete('pods', 'ns1', pod.name), (c) => c.some((e) => !has(e))));
      }
      collectGarbage();
      const mem = process.memoryUsage();
      const rss = mem.rss / 2 ** 20;
      const stats = engine.status().stats;
      opts.log(`policy-latency ${n} policies: first sync ${firstSync.toFixed(0)} ms, ${applied} endpoint applies, ${JSON.stringify(stats)}`);
      const p99 = quantile(policyMs, 0.99);
      // One apply per sync that changed something: the engine's share is the sync minus its apply.
      const engineOnly = policyHist.map((ms, i) => ms - (policyApply[i] ?? 0));
      rows.push({
        scenario: 'policy change -> programmed (k8s watch, engine, ebpf compile; no kernel), 250 endpoints x 5000 pods',
        setup: `${n} policies`,
        value: median(policyMs),
        unit: 'ms',
        detail: `p99 ${p99.toFixed(1)} ms, ${policyMs.length} changes; engine histogram p50/p99 ${median(policyHist).toFixed(1)}/${quantile(policyHist, 0.99).toFixed(1)} ms, of which ebpf compile p50/p99 ${median(policyApply).toFixed(1)}/${quantile(policyApply, 0.99).toFixed(1)} ms, engine without it p50/p99 ${median(engineOnly).toFixed(1)}/${quantile(engineOnly, 0.99).toFixed(1)} ms`,
        target: targetText(p99 <= 100, 'p99 <= 100 ms'),
      });
      if (podMs.length > 0) {
        rows.push({
          scenario: 'pod churn (remote pod created/deleted, a peer of ~40% of policies) -> programmed',
          setup: `${n} policies`,
          value: median(podMs),
          unit: 'ms',
          detail: `p99 ${quantile(podMs, 0.99).toFixed(1)} ms, ${podMs.length} changes; of which ebpf compile p50 ${median(applyMs).toFixed(1)} ms`,
        });
      }
      rows.push({ scenario: 'ADD: policyFor a new endpoint (the engine\'s kept compiler)', setup: `${n} policies`, value: median(addMs), unit: 'ms', detail: `p99 ${quantile(addMs, 0.99).toFixed(1)} ms, ${addMs.length} calls` });
      rows.push({ scenario: 'policy first sync (every endpoint compiled and applied)', setup: `${n} policies`, value: firstSync, unit: 'ms' });
      rows.push({
        scenario: 'memory: engine + source + client + in-process stand-in',
        setup: `${n} policies`,
        value: rss,
        unit: 'MiB RSS',
        detail: `heap retained ${(mem.heapUsed / 2 ** 20).toFixed(0)} MiB after a full GC (RSS ${((mem.rss - rss0) / 2 ** 20).toFixed(0)} MiB above this size's start; sizes run largest first in one process)`,
      });
    } finally {
      await engine.stop();
      await source.stop();
      await s.close();
    }
  }
  return rows;
}
