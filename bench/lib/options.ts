// Command-line flags of `npm run bench` (bench/run.ts).
import { parseArgs } from 'node:util';

export const SCENARIOS = ['throughput', 'latency', 'ebpf-policy', 'snat-cps', 'cni-latency', 'iptables-policy', 'iptables-policy-cni', 'cri-sandbox', 'policy-compile', 'policy-latency', 'policy-daemon'] as const;
export type ScenarioName = (typeof SCENARIOS)[number] | 'vnet-16000';

export interface BenchOptions {
  quick: boolean;
  only: ScenarioName[];
  /** repeats per row; the table shows the median */
  repeats: number;
  /** iperf3 seconds per repeat */
  seconds: number;
  /** round trips per latency repeat */
  roundTrips: number;
  /** pods for the "N pods up/down" row */
  bulkPods: number;
  /** also time the bulk run for vnet standalone */
  bulkAll: boolean;
  /** --vnet-16000 sizing and bounds */
  vms: number;
  podsPerVm: number;
  maxMinutes: number;
  pairs: number;
  /** --dataplane for --vnet-16000 (default iptables) */
  dataplane?: 'iptables' | 'ebpf';
  /** --mode for --vnet-16000: the pod shape (default transparent, as upstream's shipped azure-linux.conflist) */
  mode?: 'bridge' | 'transparent';
  /** --probes for --vnet-16000: pings per sampled pair (the first one is reported separately) */
  probes: number;
  log: (line: string) => void;
}

function podMode(v: string | undefined): 'bridge' | 'transparent' {
  if (v === 'bridge' || v === 'transparent') return v;
  throw new Error(`--mode must be bridge or transparent; got '${v}'`);
}

export function parseOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string', multiple: true },
      'vnet-16000': { type: 'boolean', default: false },
      repeats: { type: 'string' },
      seconds: { type: 'string' },
      vms: { type: 'string', default: '64' },
      'pods-per-vm': { type: 'string', default: '250' },
      'max-minutes': { type: 'string', default: '40' },
      pairs: { type: 'string', default: '1000' },
      dataplane: { type: 'string', default: 'iptables' },
      mode: { type: 'string', default: 'transparent' },
      probes: { type: 'string', default: '4' },
      quiet: { type: 'boolean', default: false },
      'bulk-all': { type: 'boolean', default: false },
    },
  });
  const quick = values.quick;
  const only = (values.only ?? []).flatMap((s) => s.split(',')).filter(Boolean) as ScenarioName[];
  for (const name of only) {
    if (!(SCENARIOS as readonly string[]).includes(name) && name !== 'vnet-16000') throw new Error(`--only: unknown scenario '${name}' (known: ${SCENARIOS.join(', ')}, vnet-16000)`);
  }
  if (values['vnet-16000']) only.splice(0, only.length, 'vnet-16000');
  const int = (v: string | undefined, fallback: number, what: string): number => {
    const n = v === undefined ? fallback : Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${what} must be a positive integer; got '${v}'`);
    return n;
  };
  return {
    quick,
    only: only.length ? only : [...SCENARIOS],
    repeats: int(values.repeats, quick ? 1 : 3, '--repeats'),
    seconds: int(values.seconds, quick ? 2 : 3, '--seconds'),
    roundTrips: quick ? 5000 : 20000,
    bulkPods: quick ? 64 : 250,
    bulkAll: values['bulk-all'],
    vms: int(values.vms, 64, '--vms'),
    podsPerVm: int(values['pods-per-vm'], 250, '--pods-per-vm'),
    maxMinutes: int(values['max-minutes'], 40, '--max-minutes'),
    pairs: int(values.pairs, 1000, '--pairs'),
    dataplane: values.dataplane === 'ebpf' ? 'ebpf' : 'iptables',
    mode: podMode(values.mode),
    probes: int(values.probes, 4, '--probes'),
    log: values.quiet ? () => {} : (line: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`),
  };
}
