// vnet.json: the live spec of one lab. Written atomically (temp file + rename)
// so the wireserver, which rereads it on every request, never sees half a file.
import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import type { ResolvedLabSpec } from './spec.js';

export function writeSpecFile(file: string, spec: ResolvedLabSpec): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(spec, null, 1) + '\n', { mode: 0o644 });
  renameSync(tmp, file);
}

/** Reads vnet.json as written by the lab (no revalidation: the lab validated it). */
export function readSpecFile(file: string): ResolvedLabSpec {
  return JSON.parse(readFileSync(file, 'utf8')) as ResolvedLabSpec;
}

/** A reader that reparses only when the file changed (inode, size or mtime). */
export class SpecFileReader {
  private key = '';
  private cached: ResolvedLabSpec | undefined;
  constructor(readonly file: string) {}

  read(): ResolvedLabSpec {
    const st = statSync(this.file);
    const key = `${st.ino}/${st.size}/${st.mtimeMs}`;
    if (key !== this.key || this.cached === undefined) {
      this.cached = readSpecFile(this.file);
      this.key = key;
    }
    return this.cached;
  }
}
