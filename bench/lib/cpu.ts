// Machine-wide CPU time from /proc/stat, for "CPU per Gbit". The whole
// machine is sampled (softirq work of veth/bridge/TC runs on whichever core
// takes the interrupt, not in the iperf3 processes), so other load on the
// shared cores shows up too: the figure is an upper bound.
import { readFileSync } from 'node:fs';

const USER_HZ = 100;

export interface CpuSample {
  busyTicks: number;
}

export function sampleCpu(): CpuSample {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  // cpu user nice system idle iowait irq softirq steal ...
  const fields = line.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busyTicks: total - idle };
}

/** Busy CPU seconds (all cores) between two samples. */
export function busySeconds(before: CpuSample, after: CpuSample): number {
  return (after.busyTicks - before.busyTicks) / USER_HZ;
}
