// Scenario "policy-daemon": the node daemon itself at the scale, in
// a lab VM, per dataplane: `vnetctl daemon --policy-dir` holding the world of
// bench/policy-compile.ts (1,000 policies, 5,000 pods in 20 namespaces, 250 of
// them this node's), 250 real pods attached through the native shim with their
// CNI_ARGS names (so the directory's Pod objects give them their labels).
// Measured:
//  - the daemon's RSS (VmRSS of the daemon process) once all 250 endpoints
//    are policed and synced, and after the change samples;
//  - policy change -> enforced in the kernel: one policy selecting 3 of the
//    local pods changes its port (the file is replaced by a rename, as the
//    docs advise); per sample, the daemon's own vnet_cni_policy_sync_seconds
//    (the source handing over the change -> the dataplane's apply returned,
//    kernel writes included) read as the histogram's sum delta across one
//    sync, and the wall time from the rename to that sync being counted
//    (includes the directory source's 250 ms settle wait for a file to stop
//    changing, which Kubernetes watches do not have).
import { copyFileSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Lab } from '../lab/lab.js';
import { defaultSpec } from '../lab/spec.js';
import { SHIM_CNI_PATH, VmCni } from '../test/lab/helpers/cni-harness.js';
import { VmDaemon, DAEMON_SOCKET } from './lib/daemon.js';
import { ensureCniClient, vnetConflist } from './lib/dataplane-lab.js';
import type { BenchOptions } from './lib/options.js';
import { mapLimit, quantile } from './lib/stats.js';
import type { Row } from './lib/table.js';
import { world } from './policy-compile.js';
import { measured, podObj, policyObj } from './policy-latency.js';

const LOCAL = 250;
const POLICIES = 1000;
const PODS = 5000;
/** Bounds, not assertions: a sample that takes longer is a broken run. */
const SYNC_TIMEOUT_MS = 300_000;
const SAMPLE_TIMEOUT_MS = 120_000;
const QUIET_MS = 10_000;

interface SyncCounters {
  count: number;
  sum: number;
  synced: boolean;
}

async function syncCounters(lab: Lab): Promise<SyncCounters> {
  const text = (await lab.execVm('vm1', ['curl', '-s', '--unix-socket', '/run/vnet-cni/metrics.sock', 'http://x/metrics'])).stdout;
  const num = (re: RegExp): number => Number(re.exec(text)?.[1] ?? NaN);
  return { count: num(/^vnet_cni_policy_sync_seconds_count (\S+)$/m), sum: num(/^vnet_cni_policy_sync_seconds_sum (\S+)$/m), synced: /^vnet_cni_policy_synced 1$/m.test(text) };
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`policy-daemon bench: ${what} not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The world as directory files: policies and pods (remote pods with their IPs, local pods by name only). */
function writeWorld(dir: string): void {
  const { snap } = world(POLICIES, PODS, LOCAL);
  const items = [
    ...snap.namespaces.map((n) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: n.name, labels: n.labels } })),
    ...snap.pods.map((p, i) => {
      const o = podObj(p);
      // A local pod's address is the one vnet-cni gives it: no status.podIP for those.
      return i < LOCAL ? { ...o, status: undefined, spec: { ...(o.spec as object), nodeName: 'vm1' } } : o;
    }),
    ...snap.policies.map(policyObj),
  ];
  writeFileSync(path.join(dir, 'world.json'), JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
}

function writeMeasured(dir: string, port: number): void {
  const tmp = path.join(dir, '.measured.tmp');
  writeFileSync(tmp, JSON.stringify(measured(port)));
  renameSync(tmp, path.join(dir, 'measured.json'));
}

async function runOne(dataplane: 'ebpf' | 'iptables', opts: BenchOptions): Promise<Row[]> {
  const lab = await Lab.up(defaultSpec(1, LOCAL));
  let daemon: VmDaemon | undefined;
  try {
    const dir = path.join(lab.vmPaths('vm1').root, 'policy');
    mkdirSync(dir, { recursive: true });
    writeWorld(dir);
    writeMeasured(dir, 80);
    daemon = await VmDaemon.start(lab, 'vm1', 60_000, ['--policy-dir', dir]);
    const cni = new VmCni(lab, 'vm1', vnetConflist(dataplane, { daemonSocket: DAEMON_SOCKET }), '10-azure.conflist', SHIM_CNI_PATH);
    const { locals } = world(0, LOCAL, LOCAL);
    const up = Date.now();
    await mapLimit(locals, 8, async (ep, i) => {
      const netns = await lab.addPodNetns('vm1', `p${i}`);
      await cni.add(`p${i}`, netns, `bench-scale-${i}`, { args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${ep.namespace};K8S_POD_NAME=${ep.name}` });
    });
    const upS = (Date.now() - up) / 1000;
    await waitFor('the first sync', SYNC_TIMEOUT_MS, async () => ((await syncCounters(lab)).synced ? true : undefined));
    // Let the syncs the ADDs queued drain: no new sync for QUIET_MS (a sync at
    // this scale can take many seconds in iptables; a shorter window once let a
    // sample be credited with a sync still in flight).
    await waitFor('a quiet engine', SYNC_TIMEOUT_MS, async () => {
      const a = (await syncCounters(lab)).count;
      await new Promise((r) => setTimeout(r, QUIET_MS));
      return (await syncCounters(lab)).count === a ? true : undefined;
    });
    const rssSynced = daemon.rssMiB();
    opts.log(`policy-daemon ${dataplane}: ${LOCAL} pods up in ${upS.toFixed(1)} s, daemon RSS ${rssSynced.toFixed(0)} MiB`);
    const engine: number[] = [];
    const wall: number[] = [];
    const samples = opts.quick ? 12 : 30;
    for (let i = 0; i < samples; i++) {
      const before = await syncCounters(lab);
      const t0 = performance.now();
      // A port no sample used before: every sample is a change the engine must program
      // (alternating two ports, a sample could ask for what was already programmed).
      writeMeasured(dir, 1000 + i);
      const after = await waitFor('a sync after the change', SAMPLE_TIMEOUT_MS, async () => {
        const c = await syncCounters(lab);
        return c.count > before.count ? c : undefined;
      });
      wall.push(performance.now() - t0);
      // One sync carried the change: its duration is the sum's delta (two would blur it; then skip).
      if (after.count === before.count + 1) engine.push((after.sum - before.sum) * 1000);
    }
    const rssAfter = daemon.rssMiB();
    const detail = (xs: number[]): string => `p99 ${quantile(xs, 0.99).toFixed(0)} ms (n=${xs.length})`;
    return [
      { scenario: `policy change -> enforced (daemon, ${dataplane})`, setup: `${POLICIES} policies x ${LOCAL} endpoints x ${PODS} pods`, value: quantile(engine, 0.5), unit: 'ms p50', detail: `${detail(engine)}; the daemon's sync histogram: source hands over -> kernel written` },
      { scenario: `policy file renamed -> enforced (daemon, ${dataplane})`, setup: `${POLICIES} policies x ${LOCAL} endpoints x ${PODS} pods`, value: quantile(wall, 0.5), unit: 'ms p50', detail: `${detail(wall)}; includes the directory's 250 ms settle wait` },
      { scenario: `daemon RSS (${dataplane})`, setup: `${POLICIES} policies x ${LOCAL} endpoints x ${PODS} pods`, value: rssSynced, unit: 'MiB', detail: `after ${samples} changes ${rssAfter.toFixed(0)} MiB; ${LOCAL} pods up in ${upS.toFixed(0)} s (8 in flight)` },
    ];
  } catch (err) {
    // The daemon's log goes with the lab: keep it for whoever reads the failure.
    const kept = `/tmp/vnet-bench-policy-daemon-${dataplane}.log`;
    try {
      copyFileSync(path.join(lab.vmPaths('vm1').log, 'vnet-cni-daemon.log'), kept);
      opts.log(`policy-daemon ${dataplane} failed; the daemon's log is kept in ${kept}`);
    } catch {
      // no log written yet
    }
    throw err;
  } finally {
    await daemon?.stop();
    await lab.down();
  }
}

export async function runPolicyDaemonScale(opts: BenchOptions): Promise<Row[]> {
  await ensureCniClient();
  const rows: Row[] = [];
  for (const dp of (process.env.VNET_BENCH_DATAPLANES ?? 'ebpf,iptables').split(',') as Array<'ebpf' | 'iptables'>) rows.push(...(await runOne(dp, opts)));
  return rows;
}
