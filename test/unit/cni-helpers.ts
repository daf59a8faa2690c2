// Shared helpers for the cni/ tests: run the CNI front end with a fake agent,
// in this process (runInProcess: the unit tests) or as a plugin process
// (runBinary: test/support/fake-plugin.ts, the test-only entry), and check
// that stdout holds exactly one JSON document.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import type { Logger } from 'pino';
import { runPlugin } from '../../cni/skel.js';
import { run } from '../../control/exec.js';
import { createLogger } from '../../control/log.js';
import { errorFromSpec, fakeAgent, type FakeCall, type FakeOptions } from './cni-fake-agent.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
/** The test-only plugin entry with the fake agent (test/support/fake-plugin.ts). */
export const FAKE_PLUGIN = path.join(REPO_ROOT, 'dist', 'test', 'support', 'fake-plugin.js');

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
  /** Run this executable (given the env and stdin) instead of the fake plugin entry. */
  executable?: string;
  env: Record<string, string>;
  stdin: string;
  dir: string;
  fakeError?: string;
  noise?: boolean;
}

let runCount = 0;

/** Spawn the fake plugin entry (or `executable`) with the fake agent's env knobs. */
export async function runBinary(o: BinaryOptions): Promise<BinaryRun> {
  const plugin = o.plugin ?? 'azure-vnet';
  const log = path.join(o.dir, `fake-calls-${++runCount}.jsonl`);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    VNET_CNI_FAKE_LOG: log,
    ...(o.fakeError ? { VNET_CNI_FAKE_ERROR: o.fakeError } : {}),
    ...(o.noise ? { VNET_CNI_FAKE_NOISE: '1' } : {}),
    ...o.env,
  };
  const argv = o.executable ? [o.executable] : [process.execPath, FAKE_PLUGIN, plugin];
  const result = await run(argv, { env, input: o.stdin, timeoutMs: 30_000 });
  const calls = fs.existsSync(log)
    ? fs
        .readFileSync(log, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as FakeCall)
    : [];
  return { ...result, calls };
}

const loggers = new Map<string, Logger>();

/**
 * The same call in this process: the CNI front end (runPlugin) with the fake
 * agent, stdout captured, logging to the config's logFile. What a plugin
 * process would print, without starting one.
 */
export async function runInProcess(o: Omit<BinaryOptions, 'executable' | 'noise'>): Promise<BinaryRun> {
  const plugin = o.plugin ?? 'azure-vnet';
  const calls: FakeCall[] = [];
  const out: string[] = [];
  const options: FakeOptions = {};
  const error = errorFromSpec(o.fakeError);
  if (error) options.error = error;
  const code = await runPlugin({
    plugin,
    env: { ...o.env },
    stdin: o.stdin,
    stdout: { write: (text: string) => out.push(text) },
    agentFactory: async (config) => {
      calls.push({ method: 'factory', config });
      return fakeAgent((c) => calls.push(c), options);
    },
    loggerFactory: (config, name) => {
      const key = `${name}\0${config.logLevel}\0${config.logFile}`;
      let logger = loggers.get(key);
      if (!logger) loggers.set(key, (logger = createLogger({ file: config.logFile, level: config.logLevel, name })));
      return logger;
    },
  });
  // Through JSON, as the spawned form reads its calls back from a file.
  return { code, stdout: out.join(''), stderr: '', calls: JSON.parse(JSON.stringify(calls)) as FakeCall[] };
}

/** The verbs the agent saw, without the factory/close bookkeeping. */
export function verbs(calls: FakeCall[]): string[] {
  return calls.map((c) => c.method).filter((m) => m !== 'factory' && m !== 'close');
}
