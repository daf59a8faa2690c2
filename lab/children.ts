// Long-lived child processes of the lab (the wireserver, whoami servers, the
// CLI keeper). control/exec.ts `run` waits for a program to finish; these keep
// running, so they get their own small helper, with the same rule: argv
// arrays only, never a shell.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { LabTimeoutError } from './errors.js';

export interface StartOptions {
  /** stdout/stderr: 'pipe' to read them, 'ignore', or an open fd (a log file) */
  stdout?: 'pipe' | 'ignore' | number;
  stderr?: 'pipe' | 'ignore' | number;
  env?: NodeJS.ProcessEnv;
  /** start a new session so the child outlives us (the CLI keeper) */
  detached?: boolean;
}

/**
 * Start argv with stdin as a pipe we never close: the lab's own children exit
 * when it reaches EOF, i.e. when this process dies, even by kill -9.
 */
export function startChild(argv: readonly string[], options: StartOptions = {}): ChildProcess {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error('startChild: empty argv');
  const stdio: StdioOptions = [options.detached ? 'ignore' : 'pipe', options.stdout ?? 'pipe', options.stderr ?? 'pipe'];
  const child = spawn(file, args, { stdio, env: options.env ?? process.env, detached: options.detached ?? false });
  child.stdin?.on('error', () => {});
  return child;
}

/** Resolve with the first stdout line matching `pattern`; reject if the child exits first or time runs out. */
export function waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs: number, what: string): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    let stderr = '';
    const finish = (error?: Error, match?: RegExpMatchArray): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onErr);
      child.off('exit', onExit);
      if (error) reject(error);
      else resolve(match!);
    };
    const onData = (chunk: Buffer): void => {
      buffered += chunk.toString('utf8');
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        const match = pattern.exec(line);
        if (match) return finish(undefined, match);
      }
    };
    const onErr = (chunk: Buffer): void => {
      stderr = (stderr + chunk.toString('utf8')).slice(-2000);
    };
    const onExit = (code: number | null, signal: string | null): void => {
      finish(new Error(`${what} exited (${signal ?? code}) before it was ready: ${stderr.trim()}`));
    };
    const timer = setTimeout(() => finish(new LabTimeoutError(`${what} was not ready within ${timeoutMs} ms: ${stderr.trim()}`)), timeoutMs);
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onErr);
    child.on('exit', onExit);
  });
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the child is gone. Safe to call twice. */
export function stopChild(child: ChildProcess, graceMs = 2000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Whether a pid exists (signal 0). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Poll `probe` every `intervalMs` until it returns a value other than undefined, at most `timeoutMs`. */
export async function pollUntil<T>(probe: () => Promise<T | undefined> | T | undefined, timeoutMs: number, intervalMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; attempt < 100_000; attempt++) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() >= deadline) break;
    await sleep(intervalMs);
  }
  throw new LabTimeoutError(`${what}: not reached within ${timeoutMs} ms`);
}
