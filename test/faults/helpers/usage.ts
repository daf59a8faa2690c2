// "Flat" for a long-running daemon's resources, measured between bursts of
// work once the daemon is idle (no client connected):
// - open fds: exactly the same at every checkpoint (a leaked socket, pipe or
//   file shows up as +1 per leak, no noise);
// - RSS: a checkpoint after warm-up is the reference (V8 and the allocator
//   size their heaps over the first few hundred calls: measured 76 -> 84 MiB
//   over the soak's first 150 calls, then within +-2 MiB); growth from it to
//   the last checkpoint must stay below max(10 % of the reference, 8 MiB).
//   RSS also holds V8's committed-but-free heap and the allocator's free pages,
//   so it is the coarse test (what an operator sees).
// - live V8 heap: read after the daemon's own forced full GC (SIGUSR2, see
//   node-harness.ts afterGc), so it counts live objects only; growth from the
//   reference must stay below max(10 %, 2 MiB): 1 KiB kept per call shows
//   within a soak. (Measured: 13.9-14.2 MiB over an 800-call soak.)
import type { DaemonUsage } from './node-harness.js';

export const RSS_SLACK_KIB = 8 * 1024;
export const RSS_SLACK_RATIO = 0.1;
export const HEAP_SLACK_KIB = 2 * 1024;
export const HEAP_SLACK_RATIO = 0.1;

/** fds over the whole series; RSS from series[refIndex] (the end of warm-up) to the last checkpoint. */
export function flatProblems(series: DaemonUsage[], refIndex = 0): string[] {
  if (series.length < 2) return [];
  const problems: string[] = [];
  if (series.some((u) => u.fds !== series[0]!.fds)) problems.push(`open fds changed: ${series.map((u) => u.fds).join(' -> ')}`);
  const ref = series[Math.min(refIndex, series.length - 1)]!;
  const last = series[series.length - 1]!;
  const allowed = Math.max(ref.rssKiB * RSS_SLACK_RATIO, RSS_SLACK_KIB);
  if (last.rssKiB - ref.rssKiB > allowed) problems.push(`RSS grew ${last.rssKiB - ref.rssKiB} KiB (allowed ${Math.round(allowed)}): ${series.map((u) => u.rssKiB).join(' -> ')} KiB`);
  // The live heap (read after the daemon's forced GC) is the sharp test for state kept per call in JS.
  if (ref.heapUsedKiB !== undefined && last.heapUsedKiB !== undefined) {
    const heapAllowed = Math.max(ref.heapUsedKiB * HEAP_SLACK_RATIO, HEAP_SLACK_KIB);
    if (last.heapUsedKiB - ref.heapUsedKiB > heapAllowed) {
      problems.push(`live V8 heap grew ${last.heapUsedKiB - ref.heapUsedKiB} KiB (allowed ${Math.round(heapAllowed)}): ${series.map((u) => u.heapUsedKiB ?? '?').join(' -> ')} KiB`);
    }
  }
  return problems;
}

export const formatSeries = (series: DaemonUsage[]): string =>
  series
    .map((u, i) => `#${i} ${(u.rssKiB / 1024).toFixed(1)} MiB (anon ${(u.anonKiB / 1024).toFixed(1)}${u.heapUsedKiB !== undefined ? `, V8 heap ${(u.heapUsedKiB / 1024).toFixed(1)}/${((u.heapTotalKiB ?? NaN) / 1024).toFixed(1)}` : ''})/${u.fds} fds`)
    .join(', ');
