// Shared helpers for the cniclient lab tests: build the Go client, make
// throwaway network namespaces (removed pass or fail, and leftovers of crashed
// runs removed on the next run), and run the client inside one of them.
import fs from 'node:fs';
import path from 'node:path';
import type { Test } from 'tap';
import { run, runOk, type ExecResult } from '../../control/exec.js';
import { REPO_ROOT } from '../unit/cni-helpers.js';

export const CLIENT = path.join(REPO_ROOT, 'test', 'cniclient', 'cniclient');
/** Every namespace these tests make is named `${NS_PREFIX}-<pid>-<tag>`. */
export const NS_PREFIX = 'vnetcni-cc';

let built: Promise<string> | undefined;

/** Build test/cniclient/cniclient once per process (go's cache makes a rebuild cheap). */
export function buildClient(): Promise<string> {
  built ??= runOk([path.join(REPO_ROOT, 'scripts', 'build-cniclient.sh')], { timeoutMs: 300_000 });
  return built;
}

function pidAlive(pid: number): boolean {
  return fs.existsSync(`/proc/${pid}`);
}

/** Delete namespaces left by runs whose process is gone. */
export async function removeStaleNamespaces(): Promise<void> {
  const list = await runOk(['ip', 'netns', 'list']);
  const pattern = new RegExp(`^(${NS_PREFIX}-(\\d+)-[\\w-]+)`);
  for (const line of list.split('\n')) {
    const m = pattern.exec(line.trim());
    if (m && !pidAlive(Number(m[2]))) await run(['ip', 'netns', 'del', m[1]!]);
  }
}

export interface Netns {
  name: string;
  /** The bind-mount path to pass as CNI_NETNS. */
  path: string;
}

/** A fresh named namespace with lo up, deleted when the test ends. */
export async function makeNetns(t: Test, tag: string): Promise<Netns> {
  const name = `${NS_PREFIX}-${process.pid}-${tag}`;
  await run(['ip', 'netns', 'del', name]); // a leftover of this very pid (re-run) would make add fail
  await runOk(['ip', 'netns', 'add', name]);
  t.teardown(async () => {
    await run(['ip', 'netns', 'del', name]);
  });
  await runOk(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
  return { name, path: `/var/run/netns/${name}` };
}

/** Run a command inside `ns` (never the root namespace). */
export function inNetns(ns: Netns, argv: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<ExecResult> {
  return run(['ip', 'netns', 'exec', ns.name, ...argv], { timeoutMs: options.timeoutMs ?? 60_000, ...(options.env ? { env: options.env } : {}) });
}

export interface ClientRun extends ExecResult {
  /** Parsed stdout, when there is any. */
  result?: Record<string, unknown>;
  /** Parsed last stderr line, when the client failed. */
  error?: { code: number; msg: string; details?: string; context?: string };
}

/** Run the client inside `host` (its "host" namespace). */
export async function runClient(host: Netns, args: string[], env?: NodeJS.ProcessEnv): Promise<ClientRun> {
  const r = await inNetns(host, [CLIENT, ...args], { timeoutMs: 120_000, ...(env ? { env } : {}) });
  const out: ClientRun = { ...r };
  if (r.stdout.trim() !== '') out.result = JSON.parse(r.stdout) as Record<string, unknown>;
  if (r.code !== 0) {
    const last = r.stderr.trim().split('\n').at(-1) ?? '';
    try {
      out.error = JSON.parse(last) as ClientRun['error'];
    } catch {
      out.error = { code: Number.NaN, msg: `unparsable stderr: ${r.stderr}` };
    }
  }
  return out;
}

/** Poll `probe` until it returns true: at most `tries` times, `delayMs` apart. */
export async function waitFor(probe: () => Promise<boolean>, tries = 50, delayMs = 100): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (await probe()) return true;
    await new Promise((r) => setTimeout(r, delayMs));
  }
  return false;
}
