// Scenario: ebpf TCP RR (1-byte ping-pong on one connection) with 0, 100 and
// 1,000 NetworkPolicies selecting the measured pods, same VM and across VMs.
// Each policy is one compiled rule on both pods (ingress of every pod, egress
// of every pod): a distinct /32 peer outside the lab on its own port, so the
// tries hold ~N addresses and ~N/20 port sets; the last policy admits the
// measured peer on the measured port. Applied through Dataplane.applyPolicies
// inside the VM (test/lab/helpers/policy-driver). The policy counts take turns
// within every repeat so that machine drift hits them alike.
// Target: p50 with 1,000 policies <= 1.05x p50 without.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { DataplaneLab, PodPair } from './lib/dataplane-lab.js';
import { REPO, type LoadTools } from './lib/load.js';
import type { BenchOptions } from './lib/options.js';
import { median } from './lib/stats.js';
import { ratioText, targetText, type Row } from './lib/table.js';
import type { CompiledRule, DirectionPolicy } from '../control/policy/types.js';
import type { EndpointPolicyUpdate, NodeNetwork } from '../control/dataplane/types.js';

const PORT = 7101;
const MAX_SECONDS = 15;
const COUNTS = [0, 100, 1000] as const;
const DRIVER = path.join(REPO, 'dist', 'test', 'lab', 'helpers', 'policy-driver.js');

/** n policies, the last admitting `peers` on PORT; n = 0: no policy (not isolated). */
function direction(n: number, peers: string[]): DirectionPolicy {
  if (n === 0) return { isolated: false, rules: [] };
  const rules: CompiledRule[] = [];
  for (let i = 0; i < n - 1; i++) {
    rules.push({
      peers: [{ family: 'ipv4', cidr: `10.200.${i >> 8}.${i & 255}/32`, except: [] }],
      ports: [{ protocol: 'TCP', port: 8000 + (i % 20), endPort: 8000 + (i % 20) }],
      sources: [`bench/p${i}`],
    });
  }
  rules.push({ peers: peers.map((ip) => ({ family: 'ipv4', cidr: `${ip}/32`, except: [] })), ports: [{ protocol: 'TCP', port: PORT, endPort: PORT }], sources: ['bench/measured'] });
  return { isolated: true, rules };
}

async function applyAll(dp: DataplaneLab, n: number): Promise<void> {
  const all = dp.ebpfPods.map((p) => p.pod.ip);
  for (const vm of [...new Set(dp.ebpfPods.map((p) => p.vm))]) {
    const network = (JSON.parse(readFileSync(path.join(dp.lab.vmPaths(vm).varLib, 'state.json'), 'utf8')) as { node: { network: NodeNetwork } }).node.network;
    const updates: EndpointPolicyUpdate[] = dp.ebpfPods
      .filter((p) => p.vm === vm)
      .map((p) => {
        const others = all.filter((ip) => ip !== p.pod.ip);
        return { hostVeth: '', policy: { family: 'ipv4', address: p.pod.ip, ingress: direction(n, others), egress: direction(n, others) } };
      });
    const res = await dp.lab.execVm(vm, [process.execPath, DRIVER, 'apply'], { input: JSON.stringify({ network, updates }), timeoutMs: 120_000 });
    if (res.code !== 0) throw new Error(`applyPolicies (${n} policies) on ${vm}: ${res.stderr.trim()}`);
  }
}

export async function runPolicyLatency(dp: DataplaneLab, tools: LoadTools, opts: BenchOptions): Promise<Row[]> {
  const pairs: Array<[string, PodPair]> = [
    ['TCP RR ebpf + policy, same VM', dp.sameVm.find((p) => p.setup === 'vnet ebpf')!],
    ['TCP RR ebpf + policy, across VMs', dp.crossVm.find((p) => p.setup === 'vnet ebpf')!],
  ];
  const p50 = new Map<string, number[]>();
  const p99 = new Map<string, number[]>();
  const key = (scenario: string, n: number): string => `${scenario}/${n}`;
  try {
    for (let r = 0; r < opts.repeats; r++) {
      for (const n of COUNTS) {
        await applyAll(dp, n);
        for (const [scenario, pair] of pairs) {
          const res = await tools.roundTrips(pair.client, pair.server, PORT, opts.roundTrips, MAX_SECONDS);
          (p50.get(key(scenario, n)) ?? p50.set(key(scenario, n), []).get(key(scenario, n))!).push(res.p50);
          (p99.get(key(scenario, n)) ?? p99.set(key(scenario, n), []).get(key(scenario, n))!).push(res.p99);
          opts.log(`policy-latency ${scenario} ${n} policies #${r + 1}: p50 ${res.p50.toFixed(1)} µs p99 ${res.p99.toFixed(1)} µs (${res.n} round trips)`);
        }
      }
    }
  } finally {
    await applyAll(dp, 0); // later scenarios measure the pods without policy
  }
  const rows: Row[] = [];
  for (const [scenario] of pairs) {
    const base = median(p50.get(key(scenario, 0)) ?? []);
    for (const n of COUNTS) {
      const v = median(p50.get(key(scenario, n)) ?? []);
      rows.push({
        scenario,
        setup: `${n} policies`,
        value: v,
        unit: 'µs p50',
        detail: `p99 ${median(p99.get(key(scenario, n)) ?? []).toFixed(1)} µs`,
        vsPeer: n === 0 ? 'baseline' : ratioText(v, base, 'no policy'),
        target: n === 1000 ? targetText(Number.isFinite(base) ? v <= 1.05 * base : undefined, 'p50 <= 1.05x no policy') : undefined,
      });
    }
  }
  return rows;
}
