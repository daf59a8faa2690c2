// Plain-text tables for the human views: left-aligned columns, one header
// row, a dash rule, and "(none)" for an empty body so silence is never
// mistaken for a hang or a crash.
export type Cell = string | number | bigint | boolean | null | undefined;

function text(c: Cell): string {
  if (c === null || c === undefined || c === '') return '-';
  return String(c);
}

export function renderTable(headers: readonly string[], rows: readonly Cell[][]): string {
  const body = rows.map((r) => headers.map((_, i) => text(r[i])));
  const widths = headers.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const out = [line(headers), line(widths.map((w) => '-'.repeat(w)))];
  if (body.length === 0) out.push('(none)');
  else for (const r of body) out.push(line(r));
  return out.join('\n') + '\n';
}

/** JSON where a u64 (bigint) is a number when it fits exactly, else a decimal string. */
export function toJson(x: unknown): string {
  const big = (v: bigint): number | string => (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString());
  return JSON.stringify(x, (_k, v: unknown) => (typeof v === 'bigint' ? big(v) : v), 2) + '\n';
}
