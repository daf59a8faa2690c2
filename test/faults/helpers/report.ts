// Fault tallies for docs/reliability.md. Each test file records what it
// tried; scripts/faults.mjs sets VNET_FAULTS_REPORT_DIR for the full run and
// renders the table from the files written there. Outside that run, nothing
// is written.
import fs from 'node:fs';
import path from 'node:path';

export interface FaultRow {
  area: string;
  fault: string;
  tries: number;
  outcome: string;
}

export class FaultTally {
  private readonly rows = new Map<string, FaultRow>();
  constructor(private readonly file: string) {}

  add(area: string, fault: string, outcome: string, n = 1): void {
    const key = `${area}\0${fault}\0${outcome}`;
    const row = this.rows.get(key) ?? { area, fault, tries: 0, outcome };
    row.tries += n;
    this.rows.set(key, row);
  }

  list(): FaultRow[] {
    return [...this.rows.values()];
  }

  /** Write the tally for the report, if this run produces one. */
  flush(meta: Record<string, unknown> = {}): void {
    const dir = process.env.VNET_FAULTS_REPORT_DIR;
    if (!dir) return;
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `${this.file}.json`), JSON.stringify({ file: this.file, meta, rows: this.list() }, null, 1));
  }
}
