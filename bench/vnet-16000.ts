// Scenario 5 (`npm run bench -- --vnet-16000`, not in the default run):
// 64 VMs x 250 pods, every pod ADDed through libcni and the node daemon of
// its VM, then >= 1,000 random pod pairs across VMs pinged. Bounded: ADDs stop
// being started after 85% of --max-minutes and the connectivity sample gets the
// rest (at least 2 minutes); the report says how far it got and where the time went.
import { readFileSync } from 'node:fs';
import { Lab } from '../lab/lab.js';
import { nsArgv } from '../lab/lab.js';
import { defaultSpec } from '../lab/spec.js';
import { run } from '../control/exec.js';
import { VmCni } from '../test/lab/helpers/cni-harness.js';
import { SHIM_DIR, VmCniBatch, procCpu, shimBuilt } from './lib/cni-batch.js';
import { CNI_PATH } from '../test/lab/helpers/cni-harness.js';
import { busySeconds, sampleCpu } from './lib/cpu.js';
import { DAEMON_SOCKET, VmDaemon } from './lib/daemon.js';
import { ensureCniClient, podArgs, vnetConflist } from './lib/dataplane-lab.js';
import type { BenchOptions } from './lib/options.js';
import { mapLimit, quantile, timed } from './lib/stats.js';

const IN_FLIGHT = Number(process.env.VNET16K_IN_FLIGHT ?? 16);
/** Pod netns are made per VM in chunks of this many, one `ip -batch` each, just ahead of their ADDs. */
const NETNS_CHUNK = 25;

interface PodHandle {
  netns: string;
  ip: string;
}

function machineUsedMiB(): number {
  const info = readFileSync('/proc/meminfo', 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(info)?.[1] ?? NaN);
  return (field('MemTotal') - field('MemAvailable')) / 1024;
}

/** Tracks peak memory (all daemons' RSS, and the machine's used memory) every few seconds. */
class MemoryWatch {
  peakDaemonsMiB = 0;
  peakMachineMiB = 0;
  readonly baselineMachineMiB = machineUsedMiB();
  private timer: NodeJS.Timeout | undefined;
  constructor(private readonly daemons: () => VmDaemon[]) {}
  start(intervalMs: number): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
  }
  sample(): void {
    const rss = this.daemons().reduce((sum, d) => sum + (d.rssMiB() || 0), 0);
    this.peakDaemonsMiB = Math.max(this.peakDaemonsMiB, rss);
    this.peakMachineMiB = Math.max(this.peakMachineMiB, machineUsedMiB());
  }
  stop(): void {
    clearInterval(this.timer);
    this.sample();
  }
}

/**
 * The kernel's IPv4 neighbour table counters: 'entries' (one table for every netns of the machine, so every
 * lab VM and pod: the same on every row), and table-full events and forced GC runs summed over CPUs. NaN if
 * unreadable.
 */
function arpCache(): { entries: number; tableFulls: number; forcedGc: number } {
  try {
    const [head, ...rows] = readFileSync('/proc/net/stat/arp_cache', 'utf8').trim().split('\n');
    const cols = head!.trim().split(/\s+/);
    const cells = rows.map((row) => row.trim().split(/\s+/).map((c) => parseInt(c, 16)));
    const sum = (name: string) => {
      const col = cols.indexOf(name);
      return col < 0 ? NaN : cells.reduce((acc, r) => acc + r[col]!, 0);
    };
    const entriesCol = cols.indexOf('entries');
    return { entries: entriesCol < 0 ? NaN : cells[0]![entriesCol]!, tableFulls: sum('table_fulls'), forcedGc: sum('forced_gc_runs') };
  } catch {
    return { entries: NaN, tableFulls: NaN, forcedGc: NaN };
  }
}

/** IPv4 neighbour entries of one netns: permanent (exempt from gc_thresh) and the rest (counted against it). */
async function neighCount(netns: string): Promise<{ permanent: number; dynamic: number }> {
  const res = await run(nsArgv(netns, ['ip', '-4', 'neigh', 'show']), { timeoutMs: 30_000 });
  const rows = res.code === 0 ? res.stdout.split('\n').filter((l) => l.trim()) : [];
  const permanent = rows.filter((l) => /\bPERMANENT\b/.test(l)).length;
  return { permanent, dynamic: rows.length - permanent };
}

function gcThresh3(): string {
  try {
    return readFileSync('/proc/sys/net/ipv4/neigh/default/gc_thresh3', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

function shuffledPairs(pods: PodHandle[], vmOf: Map<PodHandle, string>, count: number): [PodHandle, PodHandle][] {
  const pairs: [PodHandle, PodHandle][] = [];
  for (let attempt = 0; pairs.length < count && attempt < count * 20 && pods.length > 1; attempt++) {
    const a = pods[Math.floor(Math.random() * pods.length)]!;
    const b = pods[Math.floor(Math.random() * pods.length)]!;
    if (vmOf.get(a) !== vmOf.get(b)) pairs.push([a, b]);
  }
  return pairs;
}

export async function runVnet16000(opts: BenchOptions): Promise<string> {
  await ensureCniClient();
  const started = Date.now();
  const budgetMs = opts.maxMinutes * 60_000;
  const addDeadline = started + budgetMs * 0.85;
  const lines: string[] = [];
  const phase: Record<string, number> = {};
  const daemons: VmDaemon[] = [];
  const memory = new MemoryWatch(() => daemons);
  const clientsToKill: VmCniBatch[] = [];
  let viaShimText = 'Node launcher (bin/azure-vnet)';
  const up = await timed(() => Lab.up(defaultSpec(opts.vms, opts.podsPerVm)));
  const lab = up.value;
  phase['lab up'] = up.ms / 1000;
  try {
    memory.start(5000);
    const vms = lab.vmNames;
    const start = await timed(() => mapLimit(vms, 4, async (vm) => daemons.push(await VmDaemon.start(lab, vm, 120_000))));
    phase['64 daemons start'.replace('64', String(vms.length))] = start.ms / 1000;
    opts.log(`vnet-16000: lab up ${phase['lab up'].toFixed(1)} s, ${vms.length} daemons in ${(start.ms / 1000).toFixed(1)} s`);
    // The conflist goes in place through VmCni; the ADDs go through one `cniclient batch` per VM.
    const mode = opts.mode ?? 'transparent';
    for (const vm of vms) new VmCni(lab, vm, vnetConflist(opts.dataplane ?? 'iptables', { daemonSocket: DAEMON_SOCKET, mode }));
    const viaShim = shimBuilt() && process.env.VNET16K_NO_SHIM === undefined;
    const cniPath = viaShim ? `${SHIM_DIR}:${CNI_PATH}` : CNI_PATH;
    const clients = new Map(vms.map((vm) => [vm, new VmCniBatch(lab, vm, { cniPath })]));
    clientsToKill.push(...clients.values());
    if (viaShim) viaShimText = 'native shim (dist/shim/azure-vnet)';

    // Pod k of every VM before pod k+1 of any: a bounded run still spreads over all VMs.
    const order: { vm: string; k: number }[] = [];
    for (let k = 0; k < opts.podsPerVm; k++) for (const vm of vms) order.push({ vm, k });
    const pods: PodHandle[] = [];
    const vmOf = new Map<PodHandle, string>();
    const addMs: number[] = [];
    let netnsMs = 0;
    let failed = 0;
    let firstError = '';
    const chunks = new Map<string, Promise<string[]>>();
    const netnsOf = async (vm: string, k: number): Promise<string> => {
      const c = Math.floor(k / NETNS_CHUNK);
      const key = `${vm}/${c}`;
      let chunk = chunks.get(key);
      if (!chunk) {
        const names = Array.from({ length: Math.min(NETNS_CHUNK, opts.podsPerVm - c * NETNS_CHUNK) }, (_, i) => `p${c * NETNS_CHUNK + i}`);
        chunk = timed(() => lab.addPodNetnsMany(vm, names)).then((r) => {
          netnsMs += r.ms;
          return r.value;
        });
        chunks.set(key, chunk);
      }
      return (await chunk)[k - c * NETNS_CHUNK]!;
    };
    const cpuBefore = sampleCpu();
    const daemonCpuBefore = daemons.map((d) => procCpu(d.pid));
    const addPhase = await timed(() =>
      mapLimit(order, IN_FLIGHT, async ({ vm, k }) => {
        if (Date.now() > addDeadline) return;
        const pod = `p${k}`;
        try {
          const netns = await netnsOf(vm, k);
          const r = await timed(() => clients.get(vm)!.add(`c-${vm}-${pod}`, netns, podArgs(pod)));
          addMs.push(r.ms);
          const handle = { netns, ip: r.value };
          pods.push(handle);
          vmOf.set(handle, vm);
        } catch (err) {
          failed++;
          firstError ||= String(err).slice(0, 300);
        }
        const done = pods.length + failed;
        if (done % 500 === 0) opts.log(`vnet-16000: ${pods.length} pods up, ${failed} failed, ${((Date.now() - started) / 60_000).toFixed(1)} min`);
      }),
    );
    const addCpu = busySeconds(cpuBefore, sampleCpu());
    phase['ADD phase'] = addPhase.ms / 1000;
    // Where the CPU went: the daemons (own work; their children = ebtables/iptables
    // spawns), the libcni clients (own; their children = the plugin processes).
    const daemonCpu = daemons.map((d, i) => {
      const now = procCpu(d.pid);
      return { self: now.self - daemonCpuBefore[i]!.self, children: now.children - daemonCpuBefore[i]!.children };
    });
    const clientCpu = [...clients.values()].map((c) => procCpu(c.pid));
    await Promise.all([...clients.values()].map((c) => c.close()));
    const sum = (xs: number[]) => xs.filter(Number.isFinite).reduce((a, b) => a + b, 0);
    const cpuSplit = {
      daemons: sum(daemonCpu.map((c) => c.self)),
      daemonChildren: sum(daemonCpu.map((c) => c.children)),
      clients: sum(clientCpu.map((c) => c.self)),
      plugins: sum(clientCpu.map((c) => c.children)),
    };

    const pairs = shuffledPairs(pods, vmOf, opts.pairs);
    const pingDeadline = Math.max(started + budgetMs, Date.now() + 120_000);
    let firstOk = 0;
    let laterOk = 0;
    let neverOk = 0;
    let pingSkipped = 0;
    // The lab runs every VM on one kernel, whose IPv4 neighbour (ARP) table is one table for all netns, capped
    // by the machine's gc_thresh3 (1024 by default, settable only in the root netns, which the lab never
    // touches). Permanent entries do not count against it (Linux >= 4.19); dynamic ones do: in mode bridge a
    // pod ARPs for every peer, in mode transparent it holds one permanent entry for its gateway and never ARPs.
    // The counters below tell a dropped first packet (table full) from a plugin fault.
    const arpAfterAdd = arpCache();
    let arpPeakEntries = arpAfterAdd.entries;
    // Each pair gets up to --probes pings, 1 s apart, stopping at the first reply: the first is the figure a
    // workload's first packet sees, the rest tell a dropped first packet from a pair that cannot talk.
    const pingPhase = await timed(() =>
      mapLimit(pairs, IN_FLIGHT, async ([a, b]) => {
        if (Date.now() > pingDeadline) return void pingSkipped++;
        for (let probe = 1; probe <= opts.probes; probe++) {
          const res = await run(nsArgv(a.netns, ['ping', '-c', '1', '-W', '2', b.ip]), { timeoutMs: 10_000 });
          arpPeakEntries = Math.max(arpPeakEntries, arpCache().entries);
          if (res.code === 0) return void (probe === 1 ? firstOk++ : laterOk++);
          if (probe < opts.probes) await new Promise((r) => setTimeout(r, 1000));
        }
        neverOk++;
      }),
    );
    const arpAfterPing = arpCache();
    // Where the entries are, right after the sample: every VM, the fabric, and a sample of pods (scaled up).
    const vmNeigh = await mapLimit(vms, 4, (vm) => neighCount(lab.vmNetns(vm)));
    const fabricNeigh = await neighCount(lab.fabricNs);
    const podSample = pods.slice().sort(() => Math.random() - 0.5).slice(0, 50);
    const podNeigh = await mapLimit(podSample, 4, (p) => neighCount(p.netns));
    phase['connectivity sample'] = pingPhase.ms / 1000;
    memory.stop();

    const target = opts.vms * opts.podsPerVm;
    lines.push(`vnet-16000: ${opts.vms} VMs x ${opts.podsPerVm} pods (${target} pods), daemon mode, ${opts.dataplane ?? 'iptables'} dataplane, mode ${opts.mode ?? 'transparent'}, ${IN_FLIGHT} ADDs in flight, one libcni batch client per VM, CNI binary ${viaShimText}, budget ${opts.maxMinutes} min`);
    lines.push(`| figure | value |`, `|---|---|`);
    lines.push(`| pods up | ${pods.length} of ${target} (${failed} failed${firstError ? `; first: ${firstError.replace(/\|/g, '/')}` : ''}) |`);
    for (const [name, s] of Object.entries(phase)) lines.push(`| ${name} | ${s.toFixed(1)} s |`);
    lines.push(`| ADD rate | ${(pods.length / (addPhase.ms / 1000)).toFixed(1)} pods/s |`);
    lines.push(`| ADD latency (client call, ${IN_FLIGHT} in flight) | p50 ${quantile(addMs, 0.5).toFixed(0)} ms, p99 ${quantile(addMs, 0.99).toFixed(0)} ms |`);
    lines.push(`| pod netns creation (sum over calls) | ${(netnsMs / 1000).toFixed(1)} s |`);
    lines.push(`| machine CPU during ADD phase | ${addCpu.toFixed(0)} CPU-s = ${((addCpu * 1000) / Math.max(1, pods.length)).toFixed(0)} CPU-ms per pod |`);
    const perPod = (s: number) => `${s.toFixed(0)} CPU-s = ${((s * 1000) / Math.max(1, pods.length)).toFixed(1)} ms/pod`;
    lines.push(`| of which: daemons' own work | ${perPod(cpuSplit.daemons)} |`);
    lines.push(`| of which: daemons' child processes (ebtables/iptables) | ${perPod(cpuSplit.daemonChildren)} |`);
    lines.push(`| of which: plugin processes (exec'd by libcni) | ${perPod(cpuSplit.plugins)} |`);
    lines.push(`| of which: libcni clients (one per VM) | ${perPod(cpuSplit.clients)} |`);
    lines.push(`| of which: rest (pod netns creation, kernel, harness, other load on the machine) | ${perPod(addCpu - cpuSplit.daemons - cpuSplit.daemonChildren - cpuSplit.plugins - cpuSplit.clients)} |`);
    const probed = firstOk + laterOk + neverOk;
    lines.push(`| connectivity (${opts.probes} probes per pair, 1 s apart) | ${probed} of ${pairs.length} random cross-VM pairs probed (${pingSkipped} skipped, time): ${firstOk} answered the first ping, ${laterOk} a later one, ${neverOk} none |`);
    const delta = (x: number) => (Number.isFinite(x) ? String(x) : 'unknown');
    lines.push(`| IPv4 neighbour entries, whole kernel (gc_thresh3 ${gcThresh3()}) | after ADDs ${delta(arpAfterAdd.entries)}, peak during the sample ${delta(arpPeakEntries)}, after ${delta(arpAfterPing.entries)} |`);
    const total = (xs: { permanent: number; dynamic: number }[]) => xs.reduce((a, x) => ({ permanent: a.permanent + x.permanent, dynamic: a.dynamic + x.dynamic }), { permanent: 0, dynamic: 0 });
    const vmN = total(vmNeigh);
    const podN = total(podNeigh);
    const perSampledPod = (n: number) => (podSample.length ? (n / podSample.length).toFixed(2) : '-');
    lines.push(`| neighbour entries after the sample (ip -4 neigh), permanent / other | VMs ${vmN.permanent} / ${vmN.dynamic}; fabric ${fabricNeigh.permanent} / ${fabricNeigh.dynamic}; pods (${podSample.length} sampled) ${perSampledPod(podN.permanent)} / ${perSampledPod(podN.dynamic)} per pod |`);
    lines.push(`| neighbour table full events / forced GC runs during the sample | ${delta(arpAfterPing.tableFulls - arpAfterAdd.tableFulls)} / ${delta(arpAfterPing.forcedGc - arpAfterAdd.forcedGc)} (/proc/net/stat/arp_cache; all lab VMs share one table) |`);
    lines.push(`| peak RSS, all daemons | ${memory.peakDaemonsMiB.toFixed(0)} MiB (${(memory.peakDaemonsMiB / Math.max(1, daemons.length)).toFixed(0)} MiB per daemon) |`);
    lines.push(`| peak machine memory used | ${memory.peakMachineMiB.toFixed(0)} MiB (baseline ${memory.baselineMachineMiB.toFixed(0)} MiB) |`);
  } finally {
    for (const c of clientsToKill) c.kill();
    memory.stop();
    const down = await timed(async () => {
      await mapLimit(daemons, 8, (d) => d.stop());
      await lab.down();
    });
    lines.push(`| teardown (daemons + lab.down) | ${(down.ms / 1000).toFixed(1)} s |`);
    lines.push(`| wall time | ${((Date.now() - started) / 60_000).toFixed(1)} min |`);
  }
  return lines.join('\n');
}
