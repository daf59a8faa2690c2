// Scenario: NetworkPolicy cost in the iptables dataplane. The measured pods
// (vnet iptables pairs: same VM and across VMs) are selected by 0, 100 and
// 1,000 policies: the server's ingress and the client's egress chains get one
// rule per policy, each with its own peer set and port, and the rule that
// allows the measured flow is the last one (the worst case for a new
// connection). Rows: TCP RR p50/p99 on one connection (after its first packet
// the flow is ESTABLISHED and skips the chains), TCP connections per second
// (each SYN walks both chains), and the time applyPolicies takes to put the
// rules in place (policy change -> enforced, both chains in one call each).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { CompiledRule, EndpointPolicy } from '../control/policy/types.js';
import type { DataplaneLab } from './lib/dataplane-lab.js';
import { REPO, type Endpoint, type LoadTools } from './lib/load.js';
import type { BenchOptions } from './lib/options.js';
import { median } from './lib/stats.js';
import { ratioText, type Row } from './lib/table.js';

const DRIVER = path.join(REPO, 'dist', 'test', 'lab', 'helpers', 'policy-driver.js');
const PORT = 7200;
const CRR_PORTS = [7301, 7302];
const MAX_SECONDS = 15;
export const POLICY_COUNTS = [0, 100, 1000] as const;

interface Located extends Endpoint {
  vm: string;
  hostVeth: string;
}

function locate(dp: DataplaneLab, e: Endpoint): Located {
  for (const vm of dp.lab.vmNames) {
    let state: { endpoints: Record<string, { ip: string; hostVeth: string }> };
    try {
      state = JSON.parse(readFileSync(path.join(dp.lab.vmPaths(vm).varLib, 'state.json'), 'utf8')) as typeof state;
    } catch {
      continue;
    }
    const rec = Object.values(state.endpoints).find((r) => r.ip === e.ip);
    if (rec && e.netns.includes(`-${vm}-`)) return { ...e, vm, hostVeth: rec.hostVeth };
  }
  throw new Error(`no vnet endpoint for ${e.ip}`);
}

/** `n` rules: n-1 that match other peers and ports, then the one that allows `peer` on the measured ports. */
function rules(n: number, peer: string, salt: number): CompiledRule[] {
  const out: CompiledRule[] = [];
  for (let i = 0; i < n - 1; i++) {
    const base = 4096 + i;
    out.push({
      peers: [{ family: 'ipv4', cidr: `10.${200 + salt}.${base >> 8}.${base & 255}/32`, except: [] }, { family: 'ipv4', cidr: `172.${16 + (i % 16)}.${i >> 4}.0/24`, except: [] }],
      ports: [{ protocol: 'TCP', port: 10000 + i, endPort: 10000 + i }],
      sources: [`bench/p${i}`],
    });
  }
  if (n > 0) out.push({ peers: [{ family: 'ipv4', cidr: `${peer}/32`, except: [] }], ports: [{ protocol: 'TCP', port: 7000, endPort: 7999 }], sources: ['bench/allow'] });
  return out;
}

async function apply(dp: DataplaneLab, ep: Located, policy: EndpointPolicy): Promise<number> {
  const res = await dp.lab.execVm(ep.vm, [process.execPath, DRIVER], { input: JSON.stringify({ op: 'apply', updates: [{ hostVeth: ep.hostVeth, policy }] }), timeoutMs: 300_000 });
  const out = JSON.parse(res.stdout.trim().split('\n').pop() || '{}') as { ok?: boolean; ms?: number; error?: string };
  if (!out.ok) throw new Error(`applyPolicies on ${ep.vm}: ${out.error ?? res.stderr.trim()}`);
  return out.ms!;
}

function policyFor(ep: Located, n: number, peer: string, direction: 'ingress' | 'egress', salt: number): EndpointPolicy {
  const open = { isolated: false, rules: [] };
  const dir = { isolated: n > 0, rules: rules(n, peer, salt) };
  return { family: 'ipv4', address: ep.ip, pod: `bench/${direction}`, ingress: direction === 'ingress' ? dir : open, egress: direction === 'egress' ? dir : open };
}

export async function runIptablesPolicy(dp: DataplaneLab, tools: LoadTools, opts: BenchOptions): Promise<Row[]> {
  const pairs = [
    { where: 'same VM', pair: dp.sameVm.find((p) => p.setup === 'vnet iptables')! },
    { where: 'across VMs', pair: dp.crossVm.find((p) => p.setup === 'vnet iptables')! },
  ];
  const rows: Row[] = [];
  for (const { where, pair } of pairs) {
    const client = locate(dp, pair.client);
    const server = locate(dp, pair.server);
    const p50 = new Map<number, number>();
    const crr = new Map<number, number>();
    try {
      for (const n of POLICY_COUNTS) {
        const ms = [
          await apply(dp, server, policyFor(server, n, client.ip, 'ingress', 0)),
          await apply(dp, client, policyFor(client, n, server.ip, 'egress', 1)),
        ];
        const p50s: number[] = [];
        const p99s: number[] = [];
        const rates: number[] = [];
        for (let r = 0; r < opts.repeats; r++) {
          const rr = await tools.roundTrips(client, server, PORT, opts.roundTrips, MAX_SECONDS);
          p50s.push(rr.p50);
          p99s.push(rr.p99);
          const cr = await tools.connRate(client, server, CRR_PORTS, opts.quick ? 1000 : 3000, MAX_SECONDS);
          rates.push(cr.cps);
          opts.log(`iptables policy ${where} ${n} policies #${r + 1}: RR p50 ${rr.p50.toFixed(1)} µs p99 ${rr.p99.toFixed(1)} µs, ${cr.cps.toFixed(0)} conn/s (${cr.failed} failed); apply ${ms.map((x) => x.toFixed(0)).join('+')} ms`);
        }
        p50.set(n, median(p50s));
        crr.set(n, median(rates));
        const label = `vnet iptables, ${n} policies`;
        rows.push({
          scenario: `TCP RR ${where}, policy`, setup: label, value: median(p50s), unit: 'µs p50', detail: `p99 ${median(p99s).toFixed(1)} µs`,
          vsPeer: n === 0 ? 'baseline' : ratioText(median(p50s), p50.get(0)!, '0 policies'),
        });
        rows.push({
          scenario: `TCP CRR ${where}, policy`, setup: label, value: median(rates), unit: 'conn/s',
          vsPeer: n === 0 ? 'baseline' : ratioText(median(rates), crr.get(0)!, '0 policies'),
        });
        if (n > 0) rows.push({ scenario: `policy apply ${where}`, setup: label, value: Math.max(...ms), unit: 'ms', detail: `ingress ${ms[0]!.toFixed(0)} ms, egress ${ms[1]!.toFixed(0)} ms (applyPolicies inside the VM: read, ipset restore, iptables-restore)` });
      }
    } finally {
      await apply(dp, server, policyFor(server, 0, client.ip, 'ingress', 0)).catch(() => 0);
      await apply(dp, client, policyFor(client, 0, server.ip, 'egress', 1)).catch(() => 0);
    }
  }
  return rows;
}
