// `npm run bench`: every scenario, one table. Flags:
//   --quick              1 repeat, shorter runs, 64 pods instead of 250
//   --only <name>[,...]  throughput, latency, ebpf-policy, snat-cps, cni-latency, iptables-policy, iptables-policy-cni, cri-sandbox, policy-compile, policy-latency, policy-daemon (repeatable)
//   --repeats N --seconds N
//   --bulk-all           also bring 250 pods up/down in vnet standalone mode (slow)
//   --vnet-16000         the scale run instead (see bench/vnet-16000.ts and
//                        docs/benchmarks.md): --vms --pods-per-vm --max-minutes --pairs --dataplane
//                        --mode (pod shape) --probes (pings per sampled pair)
// Must run as root on a lab machine; every lab is torn down in finally.
import { runCniLatency } from './cni-latency.js';
import { runCriSandbox } from './cri-sandbox.js';
import { buildDataplaneLab, type DataplaneLab } from './lib/dataplane-lab.js';
import { runIptablesPolicy } from './iptables-policy.js';
import { runIptablesPolicyCni } from './iptables-policy-cni.js';
import { LoadTools } from './lib/load.js';
import { parseOptions, type BenchOptions } from './lib/options.js';
import { renderTable, type Row } from './lib/table.js';
import { runLatency } from './latency.js';
import { runPolicyCompile } from './policy-compile.js';
import { runPolicyLatency } from './policy-latency.js';
import { runPolicyDaemonScale } from './policy-daemon-scale.js';
import { runEbpfPolicy } from './ebpf-policy.js';
import { runSnatCps } from './snat-cps.js';
import { runThroughput } from './throughput.js';
import { runVnet16000 } from './vnet-16000.js';

async function dataplaneScenarios(opts: BenchOptions): Promise<Row[]> {
  const wanted = opts.only.filter((s) => s === 'throughput' || s === 'latency' || s === 'ebpf-policy' || s === 'snat-cps' || s === 'iptables-policy');
  if (wanted.length === 0) return [];
  const tools = await LoadTools.build();
  let dp: DataplaneLab | undefined;
  try {
    dp = await buildDataplaneLab(opts.log);
    const rows: Row[] = [];
    if (wanted.includes('throughput')) rows.push(...(await runThroughput(dp, tools, opts)));
    if (wanted.includes('latency')) rows.push(...(await runLatency(dp, tools, opts)));
    if (wanted.includes('ebpf-policy')) rows.push(...(await runEbpfPolicy(dp, tools, opts)));
    if (wanted.includes('snat-cps')) rows.push(...(await runSnatCps(dp, tools, opts)));
    if (wanted.includes('iptables-policy')) rows.push(...(await runIptablesPolicy(dp, tools, opts)));
    return rows;
  } finally {
    await dp?.lab.down();
    tools.close();
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('npm run bench needs root (it builds network namespaces)');
  const opts = parseOptions(process.argv.slice(2));
  const started = Date.now();
  if (opts.only.includes('vnet-16000')) {
    console.log(await runVnet16000(opts));
    return;
  }
  const rows = await dataplaneScenarios(opts);
  if (opts.only.includes('cni-latency')) rows.push(...(await runCniLatency(opts)));
  if (opts.only.includes('iptables-policy-cni')) rows.push(...(await runIptablesPolicyCni(opts)));
  if (opts.only.includes('cri-sandbox')) rows.push(...(await runCriSandbox(opts)));
  if (opts.only.includes('policy-compile')) rows.push(...runPolicyCompile(opts));
  if (opts.only.includes('policy-latency')) rows.push(...(await runPolicyLatency(opts)));
  if (opts.only.includes('policy-daemon')) rows.push(...(await runPolicyDaemonScale(opts)));
  const minutes = ((Date.now() - started) / 60_000).toFixed(1);
  console.log(`vnet-cni benchmarks (${opts.quick ? 'quick' : 'full'}; medians of ${opts.repeats} repeat(s); iperf3 ${opts.seconds} s; ${minutes} min; 2 shared cores: numbers are noisy)`);
  console.log(renderTable(rows));
  const missed = rows.filter((r) => r.target?.startsWith('missed')).length;
  console.log(`targets: ${rows.filter((r) => r.target?.startsWith('met')).length} met, ${missed} missed`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
