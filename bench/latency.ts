// Scenario 2: request/response latency, 1-byte TCP ping-pong on one
// connection (bench/tools/tcp-rr.c), p50 and p99 in µs; the median of the
// repeats' percentiles is reported.
import type { DataplaneLab, PodPair } from './lib/dataplane-lab.js';
import type { LoadTools } from './lib/load.js';
import type { BenchOptions } from './lib/options.js';
import { median } from './lib/stats.js';
import { ratioText, targetText, type Row } from './lib/table.js';

const PORT = 7100;
const MAX_SECONDS = 15;

async function measure(tools: LoadTools, pairs: PodPair[], opts: BenchOptions, scenario: string, peer: string): Promise<Row[]> {
  const p50 = new Map<string, number[]>(pairs.map((p) => [p.setup, []]));
  const p99 = new Map<string, number[]>(pairs.map((p) => [p.setup, []]));
  for (let r = 0; r < opts.repeats; r++) {
    for (const pair of pairs) {
      const res = await tools.roundTrips(pair.client, pair.server, PORT, opts.roundTrips, MAX_SECONDS);
      p50.get(pair.setup)!.push(res.p50);
      p99.get(pair.setup)!.push(res.p99);
      opts.log(`latency ${scenario} ${pair.setup} #${r + 1}: p50 ${res.p50.toFixed(1)} µs p99 ${res.p99.toFixed(1)} µs (${res.n} round trips)`);
    }
  }
  const peerP50 = median(p50.get(peer) ?? []);
  return pairs.map((p) => {
    const v = median(p50.get(p.setup)!);
    const isVnet = p.setup.startsWith('vnet');
    return {
      scenario,
      setup: p.setup,
      value: v,
      unit: 'µs p50',
      detail: `p99 ${median(p99.get(p.setup)!).toFixed(1)} µs`,
      vsPeer: p.setup === peer ? 'ceiling' : ratioText(v, peerP50, peer),
      target: isVnet ? targetText(Number.isFinite(peerP50) ? v <= 1.1 * peerP50 : undefined, `p50 <= 1.1x ${peer}`) : undefined,
    };
  });
}

export async function runLatency(dp: DataplaneLab, tools: LoadTools, opts: BenchOptions): Promise<Row[]> {
  return [
    ...(await measure(tools, dp.sameVm, opts, 'TCP RR same VM', 'raw veth')),
    ...(await measure(tools, dp.crossVm, opts, 'TCP RR across VMs', 'VM NIC (no pod)')),
  ];
}
