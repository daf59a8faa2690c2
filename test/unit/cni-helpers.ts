// Shared helpers for the cni/ tests: run the real plugin binary with a fake
// agent, and check that stdout holds exactly one JSON document.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import { run } from '../../control/exec.js';
import type { FakeCall } from './cni-fake-agent.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const FAKE_AGENT_MODULE = path.join(REPO_ROOT, 'dist', 'test', 'unit', 'cni-fake-agent.js');

let sweptStale = false;

/** Remove temp dirs of earlier runs that died before their teardown (their pid is gone). */
function sweepStaleTempDirs(): void {
  sweptStale = true;
  for (const name of fs.readdirSync(os.tmpdir())) {
    const m = /^vnet-cni-[\w-]+?-(\d+)-\w{6}$/.exec(name);
    if (m && !fs.existsSync(`/proc/${m[1]}`)) fs.rmSync(path.join(os.tmpdir(), name), { recursive: true, force: true });
  }
}

/** A temp dir removed when the test ends. */
export function tempDir(t: Test, tag: string): string {
  if (!sweptStale) sweepStaleTempDirs();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `vnet-cni-${tag}-${process.pid}-`));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A minimal valid azure-vnet config whose logs go to `dir`. */
export function baseConfig(dir: string, cniVersion: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    cniVersion,
    name: 'azure',
    type: 'azure-vnet',
    mode: 'bridge',
    bridge: 'azure0',
    ipam: { type: 'azure-vnet-ipam' },
    logFile: path.join(dir, 'azure-vnet.log'),
    stateDir: path.join(dir, 'state'),
    ...extra,
  };
}

/** Parse stdout, asserting it is one JSON document and a newline, nothing else. */
export function oneJsonDoc(t: Test, stdout: string): Record<string, unknown> {
  t.match(stdout, /^[^\n]*\n$/, 'stdout is a single line');
  let doc: unknown;
  t.doesNotThrow(() => {
    doc = JSON.parse(stdout);
  }, `stdout is JSON: ${stdout.slice(0, 200)}`);
  t.type(doc, 'object', 'stdout is a JSON object');
  return (doc ?? {}) as Record<string, unknown>;
}

export interface BinaryRun {
  code: number;
  stdout: string;
  stderr: string;
  /** Agent calls the fake agent recorded, in order (factory, verb, close). */
  calls: FakeCall[];
}

export interface BinaryOptions {
  plugin?: 'azure-vnet' | 'azure-vnet-ipam';
  /** Run this path instead of bin/<plugin> (e.g. a symlink to it). */
  executable?: string;
  env: Record<string, string>;
  stdin: string;
  dir: string;
  fakeError?: string;
  noise?: boolean;
}

let runCount = 0;

/** Spawn the real plugin binary with the fake agent behind it. */
export async function runBinary(o: BinaryOptions): Promise<BinaryRun> {
  const plugin = o.plugin ?? 'azure-vnet';
  const log = path.join(o.dir, `fake-calls-${++runCount}.jsonl`);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    VNET_CNI_TEST_AGENT: FAKE_AGENT_MODULE,
    VNET_CNI_FAKE_LOG: log,
    ...(o.fakeError ? { VNET_CNI_FAKE_ERROR: o.fakeError } : {}),
    ...(o.noise ? { VNET_CNI_FAKE_NOISE: '1' } : {}),
    ...o.env,
  };
  const result = await run([o.executable ?? path.join(REPO_ROOT, 'bin', plugin)], { env, input: o.stdin, timeoutMs: 30_000 });
  const calls = fs.existsSync(log)
    ? fs
        .readFileSync(log, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as FakeCall)
    : [];
  return { ...result, calls };
}

/** The verbs the agent saw, without the factory/close bookkeeping. */
export function verbs(calls: FakeCall[]): string[] {
  return calls.map((c) => c.method).filter((m) => m !== 'factory' && m !== 'close');
}
