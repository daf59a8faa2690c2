// Scenario: the kubelet-visible number. Pod sandbox start (RunPodSandbox,
// which returns once the sandbox is ready: netns, CNI ADD, pause process) and
// stop (StopPodSandbox: CNI DEL, kill) through containerd's CRI plugin,
// serially and 32 in parallel, with vnet-cni (node daemon + native shim, both
// dataplanes) and Debian's bridge + host-local under the same containerd in
// the same run: one lab VM, one containerd (lab/containerd.ts), the conflist
// in its conf dir swapped between setups. Every figure includes containerd's
// own work (snapshot, runc, pause start), the same for all setups.
import { rmSync } from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Lab } from '../lab/lab.js';
import { defaultSpec } from '../lab/spec.js';
import { Containerd } from '../lab/containerd.js';
import type { PodSandboxConfig } from '../lab/cri.js';
import { startChild, stopChild, waitForLine } from '../lab/children.js';
import { REPO, VmCni } from '../test/lab/helpers/cni-harness.js';
import { SHIM_DIR, shimBuilt } from './lib/cni-batch.js';
import { DAEMON_SOCKET } from './lib/daemon.js';
import { referenceConflist, vnetConflist } from './lib/dataplane-lab.js';
import type { BenchOptions } from './lib/options.js';
import { quantile, timed } from './lib/stats.js';
import { ratioText, type Row } from './lib/table.js';

const PARALLEL = 32;
const REFERENCE = 'bridge+host-local';

interface Timings {
  serialStart: number[];
  serialStop: number[];
  parallelStart: number[];
  parallelStop: number[];
}

let seq = 0;
function sandbox(ctd: Containerd, tag: string): PodSandboxConfig {
  const name = `${tag}-${seq++}`;
  return { metadata: { name, namespace: 'bench', uid: `uid-${name}` }, hostname: name, linux: { cgroup_parent: ctd.cgroupParent } };
}

async function startStop(ctd: Containerd, tag: string): Promise<{ start: number; stop: number }> {
  const run = await timed(() => ctd.cri.runPodSandbox(sandbox(ctd, tag)));
  const stop = await timed(() => ctd.cri.stopPodSandbox(run.value));
  await ctd.cri.removePodSandbox(run.value);
  return { start: run.ms, stop: stop.ms };
}

async function measure(ctd: Containerd, opts: BenchOptions, setup: string): Promise<Timings> {
  const out: Timings = { serialStart: [], serialStop: [], parallelStart: [], parallelStop: [] };
  // A node always runs some pods: one stays up while the others come and go, so no ADD pays the
  // node's first-ADD setup (and no DEL its last-pod teardown), as neither does on a working node.
  const anchor = await ctd.cri.runPodSandbox(sandbox(ctd, 'anchor'));
  await startStop(ctd, 'warm'); // containerd's first snapshot of the run
  for (let i = 0; i < (opts.quick ? 8 : 16); i++) {
    const r = await startStop(ctd, 's');
    out.serialStart.push(r.start);
    out.serialStop.push(r.stop);
  }
  const started = await Promise.all(Array.from({ length: PARALLEL }, () => timed(() => ctd.cri.runPodSandbox(sandbox(ctd, 'p')))));
  out.parallelStart.push(...started.map((s) => s.ms));
  const stopped = await Promise.all(started.map((s) => timed(() => ctd.cri.stopPodSandbox(s.value))));
  out.parallelStop.push(...stopped.map((s) => s.ms));
  for (const s of started) await ctd.cri.removePodSandbox(s.value);
  await ctd.cri.stopPodSandbox(anchor);
  await ctd.cri.removePodSandbox(anchor);
  opts.log(`cri ${setup}: start p50 ${quantile(out.serialStart, 0.5).toFixed(0)} ms serial, p99 ${quantile(out.parallelStart, 0.99).toFixed(0)} ms at ${PARALLEL} parallel`);
  return out;
}

function rows(scenario: string, all: Map<string, Timings>, pick: (t: Timings) => number[]): Row[] {
  const ref = all.get(REFERENCE);
  return [...all.entries()].map(([setup, t]) => {
    const p50 = quantile(pick(t), 0.5);
    const p99 = quantile(pick(t), 0.99);
    return {
      scenario, setup, value: p50, unit: 'ms p50',
      detail: `p99 ${p99.toFixed(0)} ms (n=${pick(t).length})`,
      vsPeer: setup === REFERENCE ? 'reference' : `${ratioText(p50, ref ? quantile(pick(ref), 0.5) : NaN, 'ref')} p50, ${ratioText(p99, ref ? quantile(pick(ref), 0.99) : NaN, 'ref')} p99`,
    };
  });
}

export async function runCriSandbox(opts: BenchOptions): Promise<Row[]> {
  if (!shimBuilt()) {
    opts.log('cri-sandbox: skipped (the native shim is not built: npm run build)');
    return [];
  }
  const lab = await Lab.up(defaultSpec(1, PARALLEL + 8));
  let ctd: Containerd | undefined;
  let daemon: ChildProcess | undefined;
  try {
    ctd = await Containerd.start(lab, 'vm1', {
      cniBins: {
        'azure-vnet': path.join(SHIM_DIR, 'azure-vnet'), 'azure-vnet-ipam': path.join(SHIM_DIR, 'azure-vnet-ipam'),
        bridge: '/usr/lib/cni/bridge', 'host-local': '/usr/lib/cni/host-local',
      },
    });
    daemon = startChild(ctd.inVm([process.execPath, path.join(REPO, 'dist', 'control', 'cli', 'vnetctl.js'), 'daemon', '--socket', DAEMON_SOCKET]));
    await waitForLine(daemon, /^READY /, 30_000, 'vnetctl daemon');
    const all = new Map<string, Timings>();
    const confDir = lab.vmPaths('vm1').cniConf;
    const setups: [string, Record<string, unknown>][] = [
      ['vnet iptables daemon via shim', vnetConflist('iptables', { daemonSocket: DAEMON_SOCKET })],
      // Its own network name, so the wait below sees containerd load this file and not the previous one.
      ['vnet ebpf daemon via shim', { ...vnetConflist('ebpf', { daemonSocket: DAEMON_SOCKET }), name: 'azure-ebpf' }],
      [REFERENCE, referenceConflist()],
    ];
    for (const [setup, conflist] of setups) {
      try {
        // One conflist in the dir at a time; containerd reloads it (the switch between vnet modes
        // works because the previous setup removed every sandbox, so the node is drained).
        rmSync(path.join(confDir, '10-azure.conflist'), { force: true });
        new VmCni(lab, 'vm1', conflist, '10-azure.conflist');
        await ctd.waitForNetwork(String(conflist.name));
        all.set(setup, await measure(ctd, opts, setup));
      } catch (err) {
        opts.log(`cri ${setup}: FAILED, no rows: ${(err as Error).message.slice(0, 300)}`);
      }
    }
    return [
      ...rows('CRI sandbox start, serial', all, (t) => t.serialStart),
      ...rows('CRI sandbox stop, serial', all, (t) => t.serialStop),
      ...rows(`CRI sandbox start, ${PARALLEL} parallel`, all, (t) => t.parallelStart),
      ...rows(`CRI sandbox stop, ${PARALLEL} parallel`, all, (t) => t.parallelStop),
    ];
  } finally {
    await ctd?.stop().catch(() => {});
    if (daemon) await stopChild(daemon);
    await lab.down();
  }
}
