// Scenario: NetworkPolicy cost in the ebpf dataplane. TCP RR (1-byte
// ping-pong on one connection) and TCP CRR (connect/request/response/close,
// every connection a new flow through the rules) with 0, 100 and 1,000
// NetworkPolicies selecting the measured pods, same VM and across VMs, and the
// time applyPolicies takes to put them in place. Each policy is one compiled
// rule on every ebpf pod (ingress and egress): a distinct /32 peer outside the
// lab on one of 20 ports, so the tries hold ~N addresses; the last policy
// admits the measured peers on 7000-7999. Applied through
// Dataplane.applyPolicies inside the VM (test/lab/helpers/ebpf-policy-driver).
// The policy counts take turns within every repeat so that machine drift hits
// them alike. Target: RR p50 with 1,000 policies <= 1.05x p50 without.
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
const CRR_PORTS = [7401, 7402];
const MAX_SECONDS = 15;
const COUNTS = [0, 100, 1000] as const;
const DRIVER = path.join(REPO, 'dist', 'test', 'lab', 'helpers', 'ebpf-policy-driver.js');

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
  rules.push({ peers: peers.map((ip) => ({ family: 'ipv4', cidr: `${ip}/32`, except: [] })), ports: [{ protocol: 'TCP', port: 7000, endPort: 7999 }], sources: ['bench/measured'] });
  return { isolated: true, rules };
}

/** Applies n policies on every ebpf pod, one applyPolicies call per VM; resolves with the slowest call's ms. */
async function applyAll(dp: DataplaneLab, n: number): Promise<number> {
  let slowest = 0;
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
    const m = /APPLIED ([\d.]+) ms/.exec(res.stdout);
    if (res.code !== 0 || !m) throw new Error(`applyPolicies (${n} policies) on ${vm}: ${res.stderr.trim()}`);
    slowest = Math.max(slowest, Number(m[1]));
  }
  return slowest;
}

export async function runEbpfPolicy(dp: DataplaneLab, tools: LoadTools, opts: BenchOptions): Promise<Row[]> {
  const pairs: Array<[string, PodPair]> = [
    ['TCP RR ebpf + policy, same VM', dp.sameVm.find((p) => p.setup === 'vnet ebpf')!],
    ['TCP RR ebpf + policy, across VMs', dp.crossVm.find((p) => p.setup === 'vnet ebpf')!],
  ];
  const samples = new Map<string, number[]>();
  const push = (k: string, v: number): void => void (samples.get(k) ?? samples.set(k, []).get(k)!).push(v);
  const get = (k: string): number => median(samples.get(k) ?? []);
  try {
    for (let r = 0; r < opts.repeats; r++) {
      for (const n of COUNTS) {
        push(`apply/${n}`, await applyAll(dp, n));
        for (const [scenario, pair] of pairs) {
          const res = await tools.roundTrips(pair.client, pair.server, PORT, opts.roundTrips, MAX_SECONDS);
          push(`p50/${scenario}/${n}`, res.p50);
          push(`p99/${scenario}/${n}`, res.p99);
          const cr = await tools.connRate(pair.client, pair.server, CRR_PORTS, opts.quick ? 1000 : 3000, MAX_SECONDS);
          push(`crr/${scenario}/${n}`, cr.cps);
          opts.log(`ebpf-policy ${scenario} ${n} policies #${r + 1}: RR p50 ${res.p50.toFixed(1)} µs p99 ${res.p99.toFixed(1)} µs, ${cr.cps.toFixed(0)} conn/s (${cr.failed} failed)`);
        }
      }
    }
  } finally {
    await applyAll(dp, 0); // later scenarios measure the pods without policy
  }
  const rows: Row[] = [];
  for (const [scenario] of pairs) {
    const base = get(`p50/${scenario}/0`);
    for (const n of COUNTS) {
      const v = get(`p50/${scenario}/${n}`);
      rows.push({
        scenario,
        setup: `vnet ebpf, ${n} policies`,
        value: v,
        unit: 'µs p50',
        detail: `p99 ${get(`p99/${scenario}/${n}`).toFixed(1)} µs`,
        vsPeer: n === 0 ? 'baseline' : ratioText(v, base, '0 policies'),
        target: n === 1000 ? targetText(Number.isFinite(base) ? v <= 1.05 * base : undefined, 'p50 <= 1.05x 0 policies') : undefined,
      });
    }
    for (const n of COUNTS) {
      const v = get(`crr/${scenario}/${n}`);
      rows.push({ scenario: scenario.replace('TCP RR', 'TCP CRR'), setup: `vnet ebpf, ${n} policies`, value: v, unit: 'conn/s', vsPeer: n === 0 ? 'baseline' : ratioText(v, get(`crr/${scenario}/0`), '0 policies') });
    }
  }
  for (const n of COUNTS.filter((c) => c > 0)) {
    rows.push({ scenario: 'policy apply, ebpf', setup: `vnet ebpf, ${n} policies`, value: get(`apply/${n}`), unit: 'ms', detail: 'applyPolicies inside the VM, every pod of the node, both directions (compile, write, flip)' });
  }
  return rows;
}
