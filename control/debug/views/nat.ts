// `debug nat`: the SNAT table from the pinned forward and reverse maps,
// joined into one row per flow, with the idle age of its newest direction.
import { MAPS, decodeNatEntry, decodeNatTuple, encodeNatTuple, protoName } from '../../dataplane/ebpf/layouts.js';
import { dumpPinnedMap, type RawMapEntry } from '../bpftool.js';
import { mapPin, type DebugContext } from '../context.js';
import { renderTable } from '../table.js';

export interface NatRow {
  proto: string;
  pod: { ip: string; port: number };
  nat: { ip: string; port: number };
  remote: { ip: string; port: number };
  /** idle time of the newest direction, ms */
  ageMs: number;
  /** the reverse entry is missing or points elsewhere: replies are not translated */
  orphan: boolean;
}

export interface NatView {
  entries: NatRow[];
  /** reverse entries no forward entry points at */
  strayReverse: number;
}

/** nowNs: CLOCK_MONOTONIC, the clock bpf_ktime_get_ns() uses. */
export function joinNat(fwd: readonly RawMapEntry[], rev: readonly RawMapEntry[], nowNs: bigint): NatView {
  const revByKey = new Map(rev.filter((e) => e.value).map((e) => [e.key.toString('hex'), decodeNatEntry(e.value!)]));
  const used = new Set<string>();
  const entries: NatRow[] = [];
  for (const e of fwd) {
    if (!e.value) continue;
    const t = decodeNatTuple(e.key);
    const f = decodeNatEntry(e.value);
    const rk = encodeNatTuple({ saddr: f.addr, daddr: t.daddr, sport: f.port, dport: t.dport, proto: t.proto }).toString('hex');
    const r = revByKey.get(rk);
    const orphan = !r || r.addr !== t.saddr || r.port !== t.sport;
    if (!orphan) used.add(rk);
    const last = !orphan && r.lastSeenNs > f.lastSeenNs ? r.lastSeenNs : f.lastSeenNs;
    entries.push({
      proto: protoName(t.proto),
      pod: { ip: t.saddr, port: t.sport },
      nat: { ip: f.addr, port: f.port },
      remote: { ip: t.daddr, port: t.dport },
      ageMs: nowNs > last ? Number((nowNs - last) / 1_000_000n) : 0,
      orphan,
    });
  }
  entries.sort((a, b) => a.nat.port - b.nat.port || a.proto.localeCompare(b.proto));
  return { entries, strayReverse: revByKey.size - used.size };
}

export async function collectNat(ctx: DebugContext): Promise<NatView> {
  if (!ctx.pinned) return { entries: [], strayReverse: 0 };
  const fwd = await dumpPinnedMap(mapPin(ctx, MAPS.snatFwd));
  const rev = await dumpPinnedMap(mapPin(ctx, MAPS.snatRev));
  return joinNat(fwd, rev, process.hrtime.bigint());
}

export function renderNat(v: NatView): string {
  const hp = (x: { ip: string; port: number }): string => `${x.ip}:${x.port}`;
  const rows = v.entries.map((e) => [e.proto, hp(e.pod), hp(e.nat), hp(e.remote), (e.ageMs / 1000).toFixed(1), e.orphan ? 'ORPHAN' : 'ok']);
  let out = renderTable(['PROTO', 'POD', 'NAT (PRIMARY)', 'REMOTE', 'IDLE S', 'STATE'], rows);
  if (v.strayReverse) out += `${v.strayReverse} reverse entries without a forward entry\n`;
  return out;
}
