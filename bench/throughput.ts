// Scenario 1: iperf3 TCP throughput, median of repeats, for pod <-> pod on
// the same VM, pod <-> pod across VMs and pod -> internet host through SNAT,
// each against its ceiling measured in the same run. CPU per Gbit is the
// machine-wide busy time during the transfer (see lib/cpu.ts).
import type { DataplaneLab, PodPair } from './lib/dataplane-lab.js';
import type { LoadTools } from './lib/load.js';
import type { BenchOptions } from './lib/options.js';
import { median } from './lib/stats.js';
import { ratioText, targetText, type Row } from './lib/table.js';

const PORT = 5201;

interface Measured {
  setup: string;
  gbps: number;
  cpuMsPerGbit: number;
}

async function measure(tools: LoadTools, pairs: PodPair[], opts: BenchOptions, label: string): Promise<Measured[]> {
  const samples = new Map<string, { gbps: number[]; cpu: number[] }>(pairs.map((p) => [p.setup, { gbps: [], cpu: [] }]));
  // Interleave setups inside each repeat, so a burst of load from elsewhere hits all of them alike.
  for (let r = 0; r < opts.repeats; r++) {
    for (const pair of pairs) {
      const res = await tools.iperf(pair.client, pair.server, PORT, opts.seconds);
      samples.get(pair.setup)!.gbps.push(res.gbps);
      samples.get(pair.setup)!.cpu.push(res.cpuMsPerGbit);
      opts.log(`throughput ${label} ${pair.setup} #${r + 1}: ${res.gbps.toFixed(2)} Gbit/s`);
    }
  }
  return pairs.map((p) => ({ setup: p.setup, gbps: median(samples.get(p.setup)!.gbps), cpuMsPerGbit: median(samples.get(p.setup)!.cpu) }));
}

function rows(scenario: string, measured: Measured[], peer: string, targets: Record<string, (m: Measured, all: Map<string, Measured>) => string>): Row[] {
  const all = new Map(measured.map((m) => [m.setup, m]));
  const peerGbps = all.get(peer)?.gbps ?? NaN;
  return measured.map((m) => ({
    scenario,
    setup: m.setup,
    value: m.gbps,
    unit: 'Gbit/s',
    detail: `${m.cpuMsPerGbit.toFixed(0)} CPU-ms/Gbit`,
    vsPeer: m.setup === peer ? 'ceiling' : ratioText(m.gbps, peerGbps, peer),
    target: targets[m.setup]?.(m, all),
  }));
}

export async function runThroughput(dp: DataplaneLab, tools: LoadTools, opts: BenchOptions): Promise<Row[]> {
  const same = await measure(tools, dp.sameVm, opts, 'same-VM');
  const cross = await measure(tools, dp.crossVm, opts, 'cross-VM');
  const snatPairs: PodPair[] = dp.toInternet.map((t) => ({ setup: t.setup, client: t.client, server: dp.internet }));
  const snat = await measure(tools, snatPairs, opts, 'SNAT');
  const ebpfVsRaw = (m: Measured, all: Map<string, Measured>): string => {
    const raw = all.get('raw veth')?.gbps;
    return targetText(raw === undefined ? undefined : m.gbps >= 0.95 * raw, '>= 0.95x raw veth');
  };
  const ebpfVsIpt = (m: Measured, all: Map<string, Measured>): string => {
    const ipt = all.get('vnet iptables')?.gbps;
    return targetText(ipt === undefined ? undefined : m.gbps >= 1.2 * ipt, '>= 1.2x iptables');
  };
  const snatRows = rows('TCP pod->internet (SNAT)', snat, 'VM NIC (no pod)', { 'vnet ebpf': ebpfVsIpt });
  const ipt = snat.find((m) => m.setup === 'vnet iptables');
  const ebpfRow = snatRows.find((r) => r.setup === 'vnet ebpf');
  if (ipt && ebpfRow) ebpfRow.vsPeer += `, ${ratioText(ebpfRow.value, ipt.gbps, 'iptables')}`;
  return [
    ...rows('TCP pod<->pod same VM', same, 'raw veth', { 'vnet ebpf': ebpfVsRaw }),
    ...rows('TCP pod<->pod across VMs', cross, 'VM NIC (no pod)', {}),
    ...snatRows,
  ];
}
