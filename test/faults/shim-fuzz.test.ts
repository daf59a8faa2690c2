// Fuzzing the native shim path: mutated and random CNI calls (helpers/cni-inputs.ts)
// with the daemon's socket put in every config that is a JSON object, through
// dist/shim/azure-vnet(-ipam) to a DaemonServer (in-process, fake agent, socket
// in a temp dir). Invariants: the shim's stdout and exit code are exactly those
// of runPlugin run in-process on the same input (so: one valid CNI JSON document
// or, for a successful DEL/CHECK/GC/STATUS, nothing); every object config of a
// legal size was forwarded (the shim's scanner agrees with JSON.parse); and the
// daemon still serves a valid ADD afterwards.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { runPlugin } from '../../cni/skel.js';
import { DaemonServer } from '../../control/daemon/server.js';
import { run } from '../../control/exec.js';
import { createLogger } from '../../control/log.js';
import { fakeAgent, FIXED_RESULT } from '../unit/cni-fake-agent.js';
import { REPO_ROOT, tempDir } from '../unit/cni-helpers.js';
import { CniInputGenerator, type CniInput } from './helpers/cni-inputs.js';
import { FaultTally } from './helpers/report.js';
import { Rng, scaled, seedFromEnv } from './helpers/scale.js';

const CALLS = scaled(100, 3_000);
const MAX_STDIN = 1024 * 1024;
const SHIM_DIR = path.join(REPO_ROOT, 'dist', 'shim');
const tally = new FaultTally('shim-fuzz');

/** The call with the daemon's socket as the last top-level key, if stdin is a JSON object. */
function withSocket(input: CniInput, socketPath: string): { input: CniInput; injected: boolean } {
  let doc: unknown;
  try {
    doc = JSON.parse(input.stdin);
  } catch {
    return { input, injected: false };
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return { input, injected: false };
  // Textually, as the last member (it wins over an earlier one): re-serialising a deeply nested document would overflow the JS stack.
  const text = input.stdin.trimEnd();
  const member = `"daemonSocket":${JSON.stringify(socketPath)}`;
  const stdin = Object.keys(doc).length === 0 ? `{${member}}` : `${text.slice(0, -1)},${member}}`;
  return { input: { ...input, stdin }, injected: true };
}

async function inProcess(input: CniInput): Promise<{ code: number; stdout: string }> {
  const writes: string[] = [];
  const code = await runPlugin({
    plugin: input.plugin,
    env: input.env,
    stdin: input.stdin,
    stdout: { write: (s: string) => writes.push(s) },
    loggerFactory: () => createLogger({ name: 'fuzz', level: 'silent' }),
    agentFactory: async () => fakeAgent(() => {}),
  });
  return { code, stdout: writes.join('') };
}

t.test('native shim fuzzing', { skip: fs.existsSync(path.join(SHIM_DIR, 'cni-shim')) ? false : 'shim not built' }, async (t) => {
  const seed = seedFromEnv();
  t.comment(`seed ${seed} (replay with VNET_FAULTS_SEED=${seed}), ${CALLS} calls`);
  const dir = tempDir(t, 'faults-shim');
  const socketPath = path.join(dir, 'daemon.sock');
  const netns = path.join(dir, 'netns'); // ADD only checks that the path exists
  fs.writeFileSync(netns, '');
  let requests = 0;
  let agentCalls = 0;
  const server = new DaemonServer({ socketPath, agent: fakeAgent(() => void agentCalls++), logger: createLogger({ name: 'fuzz', level: 'silent' }), onRequest: () => void requests++ });
  await server.listen();
  t.teardown(() => server.close());

  const gen = new CniInputGenerator(new Rng(seed), dir, netns);
  const failures: string[] = [];
  let forwarded = 0;
  for (let i = 0; i < CALLS; i++) {
    const raw = gen.next();
    // An environment is NUL-free bytes: no NUL, and a lone surrogate arrives as U+FFFD (as a runtime would pass it).
    for (const k of Object.keys(raw.env)) raw.env[k] = Buffer.from(raw.env[k]!.replace(/\0/g, ''), 'utf8').toString('utf8');
    const { input, injected } = withSocket(raw, socketPath);
    const before = requests;
    const shim = await run([path.join(SHIM_DIR, input.plugin)], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', VNET_CNI_LAB: '1', ...input.env }, input: input.stdin, timeoutMs: 30_000 });
    const want = await inProcess(input);
    const bad: string[] = [];
    if (shim.code !== want.code) bad.push(`exit ${shim.code} != ${want.code}`);
    if (shim.stdout !== want.stdout) bad.push(`stdout ${JSON.stringify(shim.stdout.slice(0, 200))} != ${JSON.stringify(want.stdout.slice(0, 200))}`);
    if (shim.stdout !== '' && !/^[^\n]*\n$/.test(shim.stdout)) bad.push('stdout is not one line');
    const expectForward = injected && Buffer.byteLength(input.stdin) <= MAX_STDIN;
    const didForward = requests > before;
    if (didForward) forwarded++;
    if (expectForward !== didForward) bad.push(`forwarded=${didForward}, expected ${expectForward}`);
    const kind = input.kind.split('+')[0]!;
    tally.add('native shim', kind, bad.length ? 'INVARIANT BROKEN' : `${didForward ? 'daemon' : 'no daemon'}: ${shim.code === 0 ? 'accepted' : 'CNI error'}, same as the plugin`);
    if (bad.length && failures.length < 10) failures.push(`${bad.join('; ')} <- ${JSON.stringify({ ...input, stdin: input.stdin.slice(0, 300) })} stderr=${shim.stderr.slice(0, 200)}`);
  }
  t.same(failures, [], `shim output identical to the in-process plugin for ${CALLS} calls`);
  t.ok(forwarded > CALLS / 2, `${forwarded} calls went through the daemon`);

  const ok = await run([path.join(SHIM_DIR, 'azure-vnet')], {
    env: { PATH: process.env.PATH ?? '', VNET_CNI_LAB: '1', CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'after', CNI_NETNS: netns, CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' },
    input: JSON.stringify({ cniVersion: '1.1.0', name: 'azure', type: 'azure-vnet', ipam: { type: 'azure-vnet-ipam' }, logFile: path.join(dir, 'after.log'), daemonSocket: socketPath }),
    timeoutMs: 30_000,
  });
  t.equal(ok.code, 0, `a valid ADD is still served afterwards ${ok.stdout}`);
  t.same((JSON.parse(ok.stdout) as { ips: { address: string }[] }).ips.map((ip) => ip.address), (FIXED_RESULT.ips ?? []).map((ip) => ip.address), 'with the agent result');
  t.ok(agentCalls > 0, 'the agent was reached');
  tally.flush({ seed, calls: CALLS });
});
