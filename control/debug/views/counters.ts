// `debug counters`: the per-CPU packet counters summed per reason. Labels
// come from the header's X-macro list through the addon; without the addon
// the reasons are shown by index.
import { MAPS, sumPerCpuU64 } from '../../dataplane/ebpf/layouts.js';
import { dumpPinnedMap, type RawMapEntry } from '../bpftool.js';
import { mapPin, type DebugContext } from '../context.js';
import { renderTable } from '../table.js';

export interface CounterRow {
  reason: string;
  packets: bigint;
  drop: boolean;
}

export async function reasonLabels(): Promise<string[]> {
  try {
    const { native } = await import('../../../native/index.js');
    return native().reasons();
  } catch {
    return [];
  }
}

export function sumCounters(entries: readonly RawMapEntry[], labels: readonly string[]): CounterRow[] {
  const rows: CounterRow[] = [];
  for (const e of entries) {
    const index = e.key.readUInt32LE(0);
    if (index >= labels.length && labels.length > 0) continue; // slots past VNET_REASON_MAX are unused
    const packets = (e.values ?? (e.value ? [e.value] : [])).reduce((n, b) => n + sumPerCpuU64(b), 0n);
    const reason = labels[index] ?? `reason-${index}`;
    rows.push({ reason, packets, drop: reason.startsWith('drop-') });
  }
  return rows;
}

export async function collectCounters(ctx: DebugContext): Promise<CounterRow[]> {
  if (!ctx.pinned) return [];
  return sumCounters(await dumpPinnedMap(mapPin(ctx, MAPS.counters)), await reasonLabels());
}

export function renderCounters(rows: readonly CounterRow[]): string {
  return renderTable(['REASON', 'PACKETS'], rows.map((r) => [r.reason, r.packets]));
}
