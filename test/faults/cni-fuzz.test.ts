// Input fuzzing of the CNI front: mutated seed configs of every spec version,
// random stdin and hostile CNI_* variables, through runPlugin in-process (a
// recording fake agent) and through the real bin/azure-vnet binaries.
// Invariants: exit 0 or 1; stdout is exactly one JSON line (the result or a
// CNI error with integer code and string msg) or, for a successful
// DEL/CHECK/GC/STATUS, nothing; the agent is never created for a rejected
// call; every accepted call is valid per the independent oracle
// (helpers/cni-inputs.ts), and every valid call is accepted.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { runPlugin } from '../../cni/skel.js';
import { createLogger } from '../../control/log.js';
import { fakeAgent, type FakeCall } from '../unit/cni-fake-agent.js';
import { runBinary, tempDir } from '../unit/cni-helpers.js';
import { CniInputGenerator, judge, VERSIONS, type CniInput } from './helpers/cni-inputs.js';
import { FaultTally } from './helpers/report.js';
import { Rng, scaled, seedFromEnv } from './helpers/scale.js';

const IN_PROCESS = scaled(10_000, 50_000);
const THROUGH_BINARY = scaled(80, 400);
const CALL_TIMEOUT_MS = 10_000;
/** Plugin processes at once in the binary part (the calls are independent). */
const BINARY_PARALLEL = 4;
const ERROR_CODES = new Set([1, 4, 6, 7]);
const tally = new FaultTally('cni-fuzz');

const VERB_METHOD: Record<string, Record<string, string>> = {
  'azure-vnet': { ADD: 'add', DEL: 'del', CHECK: 'check', GC: 'gc', STATUS: 'status' },
  'azure-vnet-ipam': { ADD: 'ipamAdd', DEL: 'ipamDel', CHECK: 'check', GC: 'gc', STATUS: 'status' },
};

interface Outcome {
  exit: number;
  stdout: string;
  calls: string[];
}

/** Check one call's outcome; returns the problems found (empty: fine). */
function problems(input: CniInput, out: Outcome, netnsExists: (p: string) => boolean): string[] {
  const bad: string[] = [];
  const verdict = judge(input, netnsExists);
  if (out.exit !== 0 && out.exit !== 1) bad.push(`exit ${out.exit}`);
  const command = input.env.CNI_COMMAND;
  const silentSuccess = out.exit === 0 && command !== 'ADD' && command !== 'VERSION';
  if (silentSuccess) {
    if (out.stdout !== '') bad.push(`stdout not empty on ${command} success`);
  } else if (!/^[^\n]*\n$/.test(out.stdout)) bad.push('stdout is not exactly one line');
  let doc: Record<string, unknown> = {};
  if (!silentSuccess) {
    try {
      doc = JSON.parse(out.stdout) as Record<string, unknown>;
    } catch {
      bad.push('stdout is not JSON');
    }
  }
  if (out.exit === 1) {
    if (!Number.isInteger(doc.code) || !ERROR_CODES.has(doc.code as number)) bad.push(`error code ${String(doc.code)} is not a validation code`);
    if (typeof doc.msg !== 'string' || doc.msg === '') bad.push('error msg missing');
    if (typeof doc.cniVersion !== 'string') bad.push('error cniVersion missing');
    if (out.calls.length > 0) bad.push(`agent used for a rejected call: ${out.calls.join(',')}`);
    if (verdict.valid) bad.push(`valid call rejected: ${out.stdout.trim().slice(0, 300)}`);
  } else if (out.exit === 0) {
    if (!verdict.valid) bad.push('invalid call accepted');
    if (command === 'VERSION') {
      if (!Array.isArray(doc.supportedVersions) || (doc.supportedVersions as string[]).join() !== VERSIONS.join()) bad.push('VERSION output wrong');
      if (out.calls.length > 0) bad.push('agent created for VERSION');
    } else {
      const want = VERB_METHOD[input.plugin]![command ?? '']!;
      const verbs = out.calls.filter((c) => c !== 'factory' && c !== 'close');
      if (verbs.join() !== want) bad.push(`agent verbs ${verbs.join()} != ${want}`);
      if (!out.calls.includes('close')) bad.push('agent not closed');
      if (command === 'ADD' && (!Array.isArray(doc.ips) || doc.cniVersion !== (JSON.parse(input.stdin) as { cniVersion: string }).cniVersion)) bad.push('ADD result malformed');
    }
  }
  return bad;
}

async function runInProcess(input: CniInput): Promise<Outcome> {
  const writes: string[] = [];
  const calls: string[] = [];
  const record = (c: FakeCall): void => void calls.push(c.method);
  let timer: NodeJS.Timeout | undefined;
  const exit = await Promise.race([
    runPlugin({
      plugin: input.plugin,
      env: input.env,
      stdin: input.stdin,
      stdout: { write: (s: string) => writes.push(s) },
      loggerFactory: () => createLogger({ name: 'fuzz', level: 'silent' }),
      agentFactory: async () => {
        calls.push('factory');
        return fakeAgent(record);
      },
    }),
    new Promise<number>((resolve) => (timer = setTimeout(() => resolve(-1), CALL_TIMEOUT_MS))),
  ]);
  clearTimeout(timer);
  return { exit, stdout: writes.join(''), calls };
}

t.test('CNI input fuzzing', async (t) => {
  const seed = seedFromEnv();
  t.comment(`seed ${seed} (replay with VNET_FAULTS_SEED=${seed})`);
  const dir = tempDir(t, 'faults-cni');
  const netns = path.join(dir, 'netns'); // ADD only checks that the path exists
  fs.writeFileSync(netns, '');
  const netnsExists = (p: string): boolean => p !== '' && fs.existsSync(p);

  await t.test(`${IN_PROCESS} calls through runPlugin`, async (t) => {
    const gen = new CniInputGenerator(new Rng(seed), dir, netns);
    const failures: string[] = [];
    let accepted = 0;
    for (let i = 0; i < IN_PROCESS; i++) {
      const input = gen.next();
      const out = await runInProcess(input);
      const bad = problems(input, out, netnsExists);
      if (out.exit === 0) accepted++;
      tally.add('cni (in-process)', input.kind.split('+')[0]!, bad.length ? 'INVARIANT BROKEN' : out.exit === 0 ? 'accepted (valid)' : 'rejected with a CNI error');
      if (bad.length && failures.length < 10) failures.push(`${bad.join('; ')} <- ${JSON.stringify({ ...input, stdin: input.stdin.slice(0, 400) })}`);
      else if (bad.length) failures.push('');
    }
    t.same(failures.slice(0, 10), [], `every invariant held for ${IN_PROCESS} calls (${failures.length} failures)`);
    // Both sides must be exercised, or the fuzzer proves little.
    t.ok(accepted > IN_PROCESS / 20, `${accepted} accepted calls`);
    t.ok(IN_PROCESS - accepted > IN_PROCESS / 4, `${IN_PROCESS - accepted} rejected calls`);
  });

  await t.test(`${THROUGH_BINARY} calls through bin/azure-vnet and bin/azure-vnet-ipam`, async (t) => {
    const gen = new CniInputGenerator(new Rng(seed ^ 0x5a5a5a5a), dir, netns);
    const inputs = Array.from({ length: THROUGH_BINARY }, () => gen.next());
    const failures: Array<[number, string]> = [];
    // BINARY_PARALLEL calls at once (a call is mostly process start-up), each
    // worker with its own directory for the fake agent's call log.
    let nextCall = 0;
    const worker = async (w: number): Promise<void> => {
      const logDir = path.join(dir, `binary-${w}`);
      fs.mkdirSync(logDir);
      for (let i = nextCall++; i < inputs.length; i = nextCall++) {
        const input = inputs[i]!;
        // An environment cannot carry NUL bytes: a real runtime could not send them.
        for (const k of Object.keys(input.env)) input.env[k] = input.env[k]!.replace(/\0/g, '');
        const r = await runBinary({ plugin: input.plugin, env: input.env, stdin: input.stdin, dir: logDir });
        const out: Outcome = { exit: r.code, stdout: r.stdout, calls: r.calls.map((c) => c.method) };
        const bad = problems(input, out, netnsExists);
        tally.add('cni (binary)', input.kind.split('+')[0]!, bad.length ? 'INVARIANT BROKEN' : out.exit === 0 ? 'accepted (valid)' : 'rejected with a CNI error');
        if (bad.length) failures.push([i, `${bad.join('; ')} <- ${JSON.stringify({ ...input, stdin: input.stdin.slice(0, 400) })} stderr=${r.stderr.slice(0, 300)}`]);
        for (const f of fs.readdirSync(logDir)) if (f.startsWith('fake-calls-')) fs.rmSync(path.join(logDir, f));
      }
    };
    await Promise.all(Array.from({ length: BINARY_PARALLEL }, (_, w) => worker(w)));
    failures.sort(([a], [b]) => a - b);
    t.same(failures.slice(0, 10).map(([, f]) => f), [], `every invariant held for ${THROUGH_BINARY} binary calls (${failures.length} failures)`);
  });
  tally.flush({ seed, inProcess: IN_PROCESS, binary: THROUGH_BINARY });
});
