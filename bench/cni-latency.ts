// Scenario 4: CNI ADD/DEL latency through the same libcni client
// (test/cniclient run inside the VM, as kubelet's runtime would), for
// vnet-cni through the node daemon with the native shim as the CNI binary
// (dist/shim, what install-cni-plugin.sh installs), the same daemon with the
// Node launcher as the CNI binary (bin/azure-vnet), vnet-cni standalone (the
// Node plugin does the work in its own process) and Debian's bridge +
// host-local; serially and 32 in parallel; then N pods up and down on one VM
// (32 in flight) and the daemon's RSS while it holds N endpoints.
// Every timing includes the client and lab/vm-exec (~same for all setups).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Lab } from '../lab/lab.js';
import { defaultSpec } from '../lab/spec.js';
import { SHIM_CNI_PATH, VmCni, type PodHandle } from '../test/lab/helpers/cni-harness.js';
import { VmDaemon, DAEMON_SOCKET } from './lib/daemon.js';
import { ensureCniClient, podArgs, referenceConflist, vnetConflist } from './lib/dataplane-lab.js';
import type { BenchOptions } from './lib/options.js';
import { mapLimit, quantile, timed } from './lib/stats.js';
import { ratioText, targetText, type Row } from './lib/table.js';

const PARALLEL = 32;
type CniSetup = 'vnet iptables daemon via shim' | 'vnet ebpf daemon via shim' | 'vnet daemon via Node launcher' | 'vnet standalone' | 'bridge+host-local';
const REFERENCE: CniSetup = 'bridge+host-local';

interface Latencies {
  serialAdd: number[];
  serialDel: number[];
  parallelAdd: number[];
  parallelDel: number[];
  bulkUpS: number;
  bulkDownS: number;
  rssMiB?: number;
}

class PodBatch {
  private seq = 0;
  constructor(
    private readonly lab: Lab,
    private readonly cni: VmCni,
  ) {}

  /** Make `count` pod netns up front: only the CNI calls are timed. */
  async netns(count: number, tag: string): Promise<{ pod: string; netns: string }[]> {
    return mapLimit(Array.from({ length: count }, () => `${tag}${this.seq++}`), 8, async (pod) => ({ pod, netns: await this.lab.addPodNetns(this.cni.vm, pod) }));
  }

  async add(p: { pod: string; netns: string }): Promise<{ ms: number; handle: PodHandle }> {
    const r = await timed(() => this.cni.add(p.pod, p.netns, `bench-${this.cni.vm}-${p.pod}`, { args: podArgs(p.pod) }));
    return { ms: r.ms, handle: r.value };
  }

  async del(h: PodHandle): Promise<number> {
    const r = await timed(() => this.cni.del(h));
    await this.lab.removePodNetns(h.netns);
    return r.ms;
  }
}

async function measureSetup(lab: Lab, cni: VmCni, opts: BenchOptions, setup: CniSetup, bulk: boolean, daemon?: VmDaemon): Promise<Latencies> {
  const batch = new PodBatch(lab, cni);
  const serialCount = opts.quick ? 8 : 16;
  const rounds = 1;
  const out: Latencies = { serialAdd: [], serialDel: [], parallelAdd: [], parallelDel: [], bulkUpS: NaN, bulkDownS: NaN };

  const serial = await batch.netns(serialCount, 's');
  const handles: PodHandle[] = [];
  for (const p of serial) {
    const r = await batch.add(p);
    out.serialAdd.push(r.ms);
    handles.push(r.handle);
  }
  for (const h of handles.splice(0)) out.serialDel.push(await batch.del(h));
  opts.log(`cni ${setup} serial: ADD p50 ${quantile(out.serialAdd, 0.5).toFixed(0)} ms, DEL p50 ${quantile(out.serialDel, 0.5).toFixed(0)} ms`);

  for (let r = 0; r < rounds; r++) {
    const wave = await batch.netns(PARALLEL, 'p');
    const added = await Promise.all(wave.map((p) => batch.add(p)));
    out.parallelAdd.push(...added.map((a) => a.ms));
    out.parallelDel.push(...(await Promise.all(added.map((a) => batch.del(a.handle)))));
  }
  opts.log(`cni ${setup} ${PARALLEL}-parallel: ADD p99 ${quantile(out.parallelAdd, 0.99).toFixed(0)} ms, DEL p99 ${quantile(out.parallelDel, 0.99).toFixed(0)} ms`);

  // The bulk run costs minutes per vnet setup on 2 shared cores: standalone only with --bulk-all.
  if (!bulk) return out;
  const pods = await batch.netns(opts.bulkPods, 'n');
  const up = await timed(() => mapLimit(pods, PARALLEL, (p) => batch.add(p)));
  out.bulkUpS = up.ms / 1000;
  if (daemon) out.rssMiB = daemon.rssMiB();
  const down = await timed(() => mapLimit(up.value, PARALLEL, (a) => batch.del(a.handle)));
  out.bulkDownS = down.ms / 1000;
  opts.log(`cni ${setup} ${opts.bulkPods} pods: up ${out.bulkUpS.toFixed(1)} s, down ${out.bulkDownS.toFixed(1)} s${daemon ? `, daemon RSS ${out.rssMiB?.toFixed(0)} MiB` : ''}`);
  return out;
}

function latencyRows(scenario: string, all: Map<CniSetup, Latencies>, pick: (l: Latencies) => number[], target?: 'p50' | 'p99'): Row[] {
  const ref = all.get(REFERENCE);
  const refP50 = ref ? quantile(pick(ref), 0.5) : NaN;
  const refP99 = ref ? quantile(pick(ref), 0.99) : NaN;
  return [...all.entries()].map(([setup, l]) => {
    const p50 = quantile(pick(l), 0.5);
    const p99 = quantile(pick(l), 0.99);
    const row: Row = {
      scenario,
      setup,
      value: p50,
      unit: 'ms p50',
      detail: `p99 ${p99.toFixed(0)} ms (n=${pick(l).length})`,
      vsPeer: setup === REFERENCE ? 'reference' : `${ratioText(p50, refP50, 'ref')} p50, ${ratioText(p99, refP99, 'ref')} p99`,
    };
    if (setup !== REFERENCE && target === 'p50') row.target = targetText(ref ? p50 <= refP50 : undefined, 'p50 <= reference');
    if (setup !== REFERENCE && target === 'p99') row.target = targetText(ref ? p99 < refP99 : undefined, 'p99 < reference');
    return row;
  });
}

/**
 * Where a forwarded ADD's time goes inside the daemon: its `request served` log
 * lines (serial ADDs only, so no lock waits) give the time from request to
 * answer and the programs the ADD ran, with the wall time spent waiting for each.
 * A program an ADD did not run counts as 0 for it, so a one-off (the node's
 * first-ADD setup) does not show up as a per-ADD cost.
 */
function daemonBreakdown(lab: Lab, vm: string, setup: CniSetup, serialIds: Set<string>): Row | undefined {
  let text: string;
  try {
    text = readFileSync(path.join(lab.vmPaths(vm).log, 'vnet-cni-daemon.log'), 'utf8');
  } catch {
    return undefined;
  }
  const total: number[] = [];
  const adds: Record<string, { n: number; ms: number }>[] = [];
  for (const line of text.split('\n')) {
    if (!line.includes('"request served"') || !line.includes('"via":"shim"')) continue;
    const rec = JSON.parse(line) as { verb?: string; containerId?: string; ms?: number; spawns?: Record<string, { n: number; ms: number }> };
    if (rec.verb !== 'ADD' || !rec.containerId || !serialIds.has(rec.containerId) || rec.ms === undefined) continue;
    total.push(rec.ms);
    adds.push(rec.spawns ?? {});
  }
  if (total.length === 0) return undefined;
  const programs = [...new Set(adds.flatMap((a) => Object.keys(a)))];
  const perAdd: string[] = [];
  const rare: string[] = [];
  for (const prog of programs) {
    const n = quantile(adds.map((a) => a[prog]?.n ?? 0), 0.5);
    const ms = quantile(adds.map((a) => a[prog]?.ms ?? 0), 0.5);
    if (n > 0) perAdd.push(`${prog} ${n}x ${ms.toFixed(0)} ms`);
    else rare.push(prog);
  }
  return {
    scenario: 'CNI ADD serial, inside the daemon',
    setup,
    value: quantile(total, 0.5),
    unit: 'ms p50',
    detail: `spawns p50: ${perAdd.join(', ') || 'none'}${rare.length ? `; only some ADDs (node setup): ${rare.join(', ')}` : ''} (n=${total.length})`,
  };
}

export async function runCniLatency(opts: BenchOptions): Promise<Row[]> {
  await ensureCniClient();
  const lab = await Lab.up(defaultSpec(4, Math.max(opts.bulkPods, 64)));
  let daemon: VmDaemon | undefined;
  let ebpfDaemon: VmDaemon | undefined;
  try {
    const all = new Map<CniSetup, Latencies>();
    daemon = await VmDaemon.start(lab, 'vm1');
    // The same daemon and VM for both CNI binaries; the shim goes first and so pays the node's first-ADD setup.
    const viaDaemon = vnetConflist('iptables', { daemonSocket: DAEMON_SOCKET });
    // A setup that fails (e.g. lock timeouts on an overloaded machine) loses its rows, not the whole run.
    const measure = async (setup: CniSetup, fn: () => Promise<Latencies>): Promise<void> => {
      try {
        all.set(setup, await fn());
      } catch (err) {
        opts.log(`cni ${setup}: FAILED, no rows: ${(err as Error).message.slice(0, 300)}`);
      }
    };
    await measure('vnet iptables daemon via shim', () => measureSetup(lab, new VmCni(lab, 'vm1', viaDaemon, '10-azure.conflist', SHIM_CNI_PATH), opts, 'vnet iptables daemon via shim', true, daemon));
    // The ebpf dataplane through its own daemon on vm4 (no bulk run: the iptables daemon's is the RSS row).
    ebpfDaemon = await VmDaemon.start(lab, 'vm4');
    await measure('vnet ebpf daemon via shim', () => measureSetup(lab, new VmCni(lab, 'vm4', vnetConflist('ebpf', { daemonSocket: DAEMON_SOCKET }), '10-azure.conflist', SHIM_CNI_PATH), opts, 'vnet ebpf daemon via shim', false, ebpfDaemon));
    await measure('vnet daemon via Node launcher', () => measureSetup(lab, new VmCni(lab, 'vm1', viaDaemon), opts, 'vnet daemon via Node launcher', opts.bulkAll));
    await measure('vnet standalone', () => measureSetup(lab, new VmCni(lab, 'vm2', vnetConflist('iptables')), opts, 'vnet standalone', opts.bulkAll));
    await measure(REFERENCE, () => measureSetup(lab, new VmCni(lab, 'vm3', referenceConflist(), '10-ref.conflist'), opts, REFERENCE, true));

    const serialIds = (vm: string): Set<string> => new Set(Array.from({ length: opts.quick ? 8 : 16 }, (_, i) => `bench-${vm}-s${i}`));
    const breakdown = [daemonBreakdown(lab, 'vm1', 'vnet iptables daemon via shim', serialIds('vm1')), daemonBreakdown(lab, 'vm4', 'vnet ebpf daemon via shim', serialIds('vm4'))].filter((r): r is Row => r !== undefined);
    const bulkRows: Row[] = [...all.entries()].filter(([, l]) => Number.isFinite(l.bulkUpS)).map(([setup, l]) => ({
      scenario: `${opts.bulkPods} pods up / down (${PARALLEL} in flight)`,
      setup,
      value: l.bulkUpS,
      unit: 's up',
      detail: `${l.bulkDownS.toFixed(1)} s down`,
      vsPeer: setup === REFERENCE ? 'reference' : ratioText(l.bulkUpS, all.get(REFERENCE)?.bulkUpS ?? NaN, 'ref'),
    }));
    const rss = all.get('vnet iptables daemon via shim')?.rssMiB ?? NaN;
    return [
      ...latencyRows('CNI ADD serial', all, (l) => l.serialAdd, 'p50'),
      ...breakdown,
      ...latencyRows('CNI DEL serial', all, (l) => l.serialDel),
      ...latencyRows(`CNI ADD ${PARALLEL} parallel`, all, (l) => l.parallelAdd, 'p99'),
      ...latencyRows(`CNI DEL ${PARALLEL} parallel`, all, (l) => l.parallelDel),
      ...bulkRows,
      {
        scenario: `daemon RSS at ${opts.bulkPods} endpoints`,
        setup: 'vnet iptables daemon via shim',
        value: rss,
        unit: 'MiB',
        detail: 'VmRSS of vnetctl daemon',
        target: targetText(Number.isFinite(rss) ? rss < 100 : undefined, '< 100 MB'),
      },
    ];
  } finally {
    await daemon?.stop();
    await ebpfDaemon?.stop();
    await lab.down();
  }
}
