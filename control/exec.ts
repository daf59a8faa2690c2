// The one way the control plane runs a program: argv arrays only, never a
// shell, so no input (pod names, container IDs, config values) is ever parsed
// by one. Output is captured; stdout of the plugin itself is never inherited.
import { spawn } from 'node:child_process';
import { AsyncLocalStorage } from 'node:async_hooks';
import path from 'node:path';

/** Programs run and wall time spent waiting for them, per program name. */
export type SpawnTally = Record<string, { n: number; ms: number }>;

/**
 * Where a unit of work's spawns are tallied: the daemon runs each request in
 * `spawnTally.run({}, ...)` and logs the tally, so its log shows how much of a
 * request was ip/iptables/ebtables. Outside such a scope nothing is counted.
 */
export const spawnTally = new AsyncLocalStorage<SpawnTally>();

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  input?: string;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

export class ExecError extends Error {
  readonly code = 'EEXEC';
  constructor(
    readonly argv: readonly string[],
    readonly result: ExecResult,
  ) {
    super(`${argv.join(' ')} exited ${result.code}: ${(result.stderr || result.stdout).trim().slice(0, 2000)}`);
    this.name = 'ExecError';
  }
}

/** Run argv and resolve with its exit code and output (never rejects on a non-zero exit). */
export function run(argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const [file, ...args] = argv;
    if (file === undefined) return reject(new Error('run: empty argv'));
    const tally = spawnTally.getStore();
    const started = tally ? performance.now() : 0;
    const child = spawn(file, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: options.env ?? process.env,
      timeout: options.timeoutMs ?? 60_000,
      killSignal: 'SIGKILL',
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (tally) {
        const entry = (tally[path.basename(file)] ??= { n: 0, ms: 0 });
        entry.n++;
        entry.ms += performance.now() - started;
      }
      resolve({
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8') + (signal ? `\n(killed by ${signal})` : ''),
      });
    });
    child.stdin.on('error', () => {}); // the child may exit before reading its input
    child.stdin.end(options.input ?? '');
  });
}

/** Run argv and throw ExecError on a non-zero exit. */
export async function runOk(argv: readonly string[], options: ExecOptions = {}): Promise<string> {
  const result = await run(argv, options);
  if (result.code !== 0) throw new ExecError(argv, result);
  return result.stdout;
}
