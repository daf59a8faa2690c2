// Plain-text tables for the CLI and the demo.

export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n') + '\n';
}

/** 10.240.1.4, 10.240.1.5, 10.240.1.6, 10.240.2.9 -> "10.240.1.4-6, 10.240.2.9" */
export function compressIps(ips: string[]): string {
  const parts: string[] = [];
  let i = 0;
  while (i < ips.length) {
    const start = ips[i]!;
    const [a, b, c, d] = start.split('.').map(Number) as [number, number, number, number];
    let j = i;
    while (j + 1 < ips.length && ips[j + 1] === `${a}.${b}.${c}.${d + (j + 1 - i)}`) j++;
    parts.push(j === i ? start : `${start}-${d + (j - i)}`);
    i = j + 1;
  }
  return parts.join(', ');
}
