// stdout is the runtime's channel: exactly one JSON document, the result or
// the error. Anything else a dependency prints is diverted to stderr.
import { asVnetError } from './errors.js';

export interface Writer {
  write(text: string): unknown;
}

/** The CNI error document (spec 1.1.0 "Error"); details only when there are some. */
export function errorDocument(err: unknown, cniVersion: string): Record<string, unknown> {
  const e = asVnetError(err);
  return { cniVersion, code: e.cniCode, msg: e.message, ...(e.details ? { details: e.details } : {}) };
}

export function writeJson(out: Writer, doc: unknown): void {
  out.write(`${JSON.stringify(doc)}\n`);
}

/**
 * Point process.stdout (and so console.log/info/debug) at stderr for the rest
 * of the process, and return a writer for the real stdout. Call once, first.
 */
export function guardStdout(): Writer & { writeBytes(bytes: Uint8Array): void; flush(): Promise<void> } {
  const stdout = process.stdout;
  const realWrite = stdout.write.bind(stdout);
  const divert = ((chunk: unknown, ...rest: unknown[]) =>
    (process.stderr.write as (...a: unknown[]) => boolean)(chunk, ...rest)) as typeof stdout.write;
  stdout.write = divert;
  for (const method of ['log', 'info', 'debug', 'dir', 'table'] as const) {
    console[method] = ((...args: unknown[]) => console.error(...args)) as (typeof console)[typeof method];
  }
  return {
    write: (text: string) => realWrite(text),
    // Bytes another process produced (the daemon's run of the call), passed on unchanged.
    writeBytes: (bytes: Uint8Array) => realWrite(bytes),
    // Resolves once everything written so far has left the process.
    flush: () => new Promise<void>((resolve) => realWrite('', () => resolve())),
  };
}
