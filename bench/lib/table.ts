// The one table `npm run bench` prints: a row per (scenario, setup), with the
// peer it is compared against measured in the same run.

export interface Row {
  scenario: string;
  setup: string;
  /** the headline figure (a median over repeats) */
  value: number;
  unit: string;
  /** secondary figures: p99, CPU per Gbit, failures... */
  detail?: string;
  /** "0.97x raw veth" */
  vsPeer?: string;
  /** "met (>= 0.95x raw veth)" / "missed (...)" */
  target?: string;
}

export function ratioText(value: number, peer: number, peerName: string): string {
  if (!Number.isFinite(value) || !Number.isFinite(peer) || peer === 0) return `- vs ${peerName}`;
  return `${(value / peer).toFixed(2)}x ${peerName}`;
}

/** "met (rule)" or "missed (rule)"; "n/a" when a figure is missing. */
export function targetText(ok: boolean | undefined, rule: string): string {
  if (ok === undefined) return `n/a (${rule})`;
  return `${ok ? 'met' : 'missed'} (${rule})`;
}

export function formatValue(value: number): string {
  if (!Number.isFinite(value)) return '-';
  if (Math.abs(value) >= 100) return value.toFixed(0);
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

export function renderTable(rows: readonly Row[]): string {
  const header = ['scenario', 'setup', 'median', 'unit', 'detail', 'vs peer', 'target'];
  const cells = rows.map((r) => [r.scenario, r.setup, formatValue(r.value), r.unit, r.detail ?? '', r.vsPeer ?? '', r.target ?? '']);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]): string => '| ' + c.map((v, i) => (i === 2 ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join(' | ') + ' |';
  return [line(header), '|' + widths.map((w, i) => (i === 2 ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2))).join('|') + '|', ...cells.map(line)].join('\n');
}
