// The native CNI shim (native/shim/cni-shim.c, built to dist/shim/) as a
// runtime runs it: with a daemon socket in the config it hands the raw call to
// the daemon (the real DaemonServer here, with a recording fake agent), which
// runs the plugin's own code; the bytes on stdout and the exit code must be
// those of the CNI front end running the same call with the same fake agent
// standalone. Without a usable socket it must exec the Node plugin with stdin
// replayed. Also: the top-level "daemonSocket" scanner, oversized stdin, a
// daemon that dies after taking the request, a daemon that refuses the
// request, and `azure-vnet debug` with a stdin that never ends.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import t, { type Test } from 'tap';
import { run, type ExecResult } from '../../control/exec.js';
import { createLogger } from '../../control/log.js';
import { PoolExhaustedError } from '../../control/errors.js';
import { DaemonServer } from '../../control/daemon/server.js';
import { decodeRequest, encodeResponse, frame, FrameReader, Verb } from '../../control/daemon/codec.js';
import { fakeAgent, type FakeCall } from '../unit/cni-fake-agent.js';
import { FAKE_PLUGIN, REPO_ROOT, baseConfig, runBinary, runInProcess, tempDir } from '../unit/cni-helpers.js';

const SHIM_DIR = path.join(REPO_ROOT, 'dist', 'shim');
const built = fs.existsSync(path.join(SHIM_DIR, 'cni-shim'));

const CALL_ENV = { CNI_CONTAINERID: 'ctr-1', CNI_NETNS: '/proc/self/ns/net', CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni', CNI_ARGS: 'K8S_POD_NAME=web;K8S_POD_NAMESPACE=prod' };

/** The `code` of a CNI error printed on stdout. */
function cniCode(stdout: string): unknown {
  return (JSON.parse(stdout) as { code?: unknown }).code;
}

function shim(plugin: 'azure-vnet' | 'azure-vnet-ipam', env: Record<string, string>, stdin: string): Promise<ExecResult> {
  return run([path.join(SHIM_DIR, plugin)], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', VNET_CNI_LAB: '1', ...env }, input: stdin, timeoutMs: 30_000 });
}

interface Daemon {
  socketPath: string;
  calls: FakeCall[];
  requests: string[];
}

async function startDaemon(t: Test, dir: string, name: string, error?: Error): Promise<Daemon> {
  const d: Daemon = { socketPath: path.join(dir, `${name}.sock`), calls: [], requests: [] };
  const agent = fakeAgent((c) => d.calls.push(c), error ? { error } : {});
  const server = new DaemonServer({ socketPath: d.socketPath, agent, logger: createLogger({ name: 'test-daemon', level: 'silent' }), onRequest: (verb) => d.requests.push(verb) });
  await server.listen();
  t.teardown(() => server.close());
  return d;
}

t.test('the shim is built', { skip: built ? false : 'dist/shim/cni-shim not built (npm run build:shim)' }, async (t) => {
  const dir = tempDir(t, 'shim');
  const daemon = await startDaemon(t, dir, 'daemon');
  const failing = await startDaemon(t, dir, 'failing', new PoolExhaustedError('no free IP in the test pool'));

  /** The same call through the shim (daemon) and through the front end standalone (fake agent): identical. */
  async function same(t: Test, what: string, o: { plugin?: 'azure-vnet' | 'azure-vnet-ipam'; env: Record<string, string>; conf: Record<string, unknown> | string; socket?: Daemon; forwarded?: boolean; fakeError?: string }): Promise<ExecResult> {
    const plugin = o.plugin ?? 'azure-vnet';
    const socket = o.socket ?? daemon;
    const stdin = typeof o.conf === 'string' ? o.conf : JSON.stringify({ ...o.conf, daemonSocket: socket.socketPath });
    const before = socket.requests.length;
    const viaShim = await shim(plugin, o.env, stdin);
    const inProcess = await runInProcess({ plugin, env: o.env, stdin, dir, ...(o.fakeError ? { fakeError: o.fakeError } : {}) });
    t.equal(viaShim.stdout, inProcess.stdout, `${what}: stdout byte-identical to ${plugin} standalone (${viaShim.stdout.trim().slice(0, 120)})`);
    t.equal(viaShim.code, inProcess.code, `${what}: same exit code ${inProcess.code}`);
    if (o.forwarded !== false) t.equal(socket.requests.length, before + 1, `${what}: the daemon ran it`);
    return viaShim;
  }

  t.test('through the daemon: results and errors identical to the standalone plugin', async (t) => {
    const conf10 = baseConfig(dir, '1.0.0');
    for (const command of ['ADD', 'DEL', 'CHECK']) await same(t, `${command} 1.0.0`, { env: { ...CALL_ENV, CNI_COMMAND: command }, conf: conf10 });
    await same(t, 'ADD 0.3.0', { env: { ...CALL_ENV, CNI_COMMAND: 'ADD' }, conf: baseConfig(dir, '0.3.0') });
    const conf11 = baseConfig(dir, '1.1.0', { 'cni.dev/valid-attachments': [{ containerID: 'ctr-1', ifname: 'eth0' }] });
    for (const command of ['GC', 'STATUS', 'VERSION']) await same(t, `${command} 1.1.0`, { env: { CNI_COMMAND: command, CNI_PATH: '/usr/lib/cni' }, conf: conf11 });
    await same(t, 'azure-vnet-ipam ADD', { plugin: 'azure-vnet-ipam', env: { ...CALL_ENV, CNI_COMMAND: 'ADD' }, conf: { ...conf10, type: 'azure-vnet-ipam' } });
    const prev = { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: '/proc/self/ns/net' }], ips: [{ address: '10.240.0.5/16', interface: 0 }] };
    await same(t, 'CHECK with prevResult', { env: { ...CALL_ENV, CNI_COMMAND: 'CHECK' }, conf: { ...conf10, prevResult: prev } });
    // Error cases: the daemon validates exactly as the plugin does.
    const badMode = await same(t, 'bad config', { env: { ...CALL_ENV, CNI_COMMAND: 'ADD' }, conf: { ...conf10, mode: 'sideways' } });
    t.equal(cniCode(badMode.stdout), 7, 'invalid config: code 7');
    const badVersion = await same(t, 'unknown version', { env: { ...CALL_ENV, CNI_COMMAND: 'ADD' }, conf: { ...conf10, cniVersion: '9.9.9' } });
    t.equal(cniCode(badVersion.stdout), 1, 'unknown version: code 1');
    await same(t, 'CHECK on 0.3.1', { env: { ...CALL_ENV, CNI_COMMAND: 'CHECK' }, conf: baseConfig(dir, '0.3.1') });
    await same(t, 'bad prevResult', { env: { ...CALL_ENV, CNI_COMMAND: 'CHECK' }, conf: { ...conf10, prevResult: { ips: 5 } } });
    await same(t, 'no CNI_COMMAND', { env: { ...CALL_ENV }, conf: conf10 });
    await same(t, 'bad container id', { env: { ...CALL_ENV, CNI_COMMAND: 'ADD', CNI_CONTAINERID: '../x' }, conf: conf10 });
    const exhausted = await same(t, 'agent error', { env: { ...CALL_ENV, CNI_COMMAND: 'ADD' }, conf: conf10, socket: failing, fakeError: 'PoolExhaustedError:no free IP in the test pool' });
    t.equal(cniCode(exhausted.stdout), 100, 'the agent\'s CNI code');

    const adds = daemon.calls.filter((c) => c.method === 'add');
    t.match(adds[0], { call: { containerId: 'ctr-1', ifName: 'eth0', netns: '/proc/self/ns/net', args: { K8S_POD_NAME: 'web', K8S_POD_NAMESPACE: 'prod' } } }, 'the daemon\'s agent got the call\'s arguments');
    t.notOk(daemon.calls.some((c) => c.method === 'close'), 'the daemon\'s agent is never closed by a call');
    const log = fs.readFileSync(path.join(dir, 'azure-vnet.log'), 'utf8');
    t.match(log, /"via":"daemon".*"command":"ADD".*"containerId":"ctr-1"/, 'per-call log lines in the conflist\'s logFile');
  });

  t.test('the scanner: only a top-level string daemonSocket forwards', async (t) => {
    const s = JSON.stringify(daemon.socketPath);
    const cases: { name: string; stdin: string; forwarded: boolean }[] = [
      { name: 'plain', stdin: `{"cniVersion":"1.0.0","daemonSocket":${s}}`, forwarded: true },
      { name: 'whitespace everywhere', stdin: ` \n\t{ "cniVersion" : "1.0.0" ,\r\n "daemonSocket"\n:\t${s} }\n `, forwarded: true },
      { name: 'escaped key and path', stdin: `{"daemon\\u0053ocket":${s.replaceAll('/', '\\/')},"cniVersion":"1.0.0"}`, forwarded: true },
      { name: 'after nested decoys and escaped quotes', stdin: `{"a":{"daemonSocket":"/nope"},"b":["daemonSocket","x\\"daemonSocket\\":\\"y"],"c":"\\"daemonSocket\\":1","daemonSocket":${s},"n":[1,-2.5e3,true,false,null,{}]}`, forwarded: true },
      { name: 'after 100000 levels of nesting', stdin: `{"a":${'[{"b":'.repeat(50_000)}1${'}]'.repeat(50_000)},"daemonSocket":${s}}`, forwarded: true },
      { name: 'last duplicate wins', stdin: `{"daemonSocket":"/nope","daemonSocket":${s}}`, forwarded: true },
      { name: 'nested only', stdin: `{"cniVersion":"1.0.0","ipam":{"daemonSocket":${s}}}`, forwarded: false },
      { name: 'inside an array', stdin: `{"plugins":[{"daemonSocket":${s}}]}`, forwarded: false },
      { name: 'inside a string', stdin: `{"x":"\\"daemonSocket\\":${s.replaceAll('"', '\\"')}"}`, forwarded: false },
      { name: 'missing', stdin: '{"cniVersion":"1.0.0"}', forwarded: false },
      { name: 'not a string', stdin: '{"daemonSocket":42}', forwarded: false },
      { name: 'string then non-string', stdin: `{"daemonSocket":${s},"daemonSocket":null}`, forwarded: false },
      { name: 'empty', stdin: '{"daemonSocket":""}', forwarded: false },
      { name: 'key with different case', stdin: `{"DaemonSocket":${s}}`, forwarded: false },
      { name: 'trailing garbage', stdin: `{"daemonSocket":${s}} x`, forwarded: false },
      { name: 'unterminated', stdin: `{"daemonSocket":${s},"a":[1,2`, forwarded: false },
      { name: 'bad escape', stdin: `{"a":"\\q","daemonSocket":${s}}`, forwarded: false },
      { name: 'raw control character', stdin: `{"a":"x\ty","daemonSocket":${s}}`, forwarded: false },
      { name: 'not an object', stdin: `[${s}]`, forwarded: false },
      { name: 'leading zero number', stdin: `{"a":01,"daemonSocket":${s}}`, forwarded: false },
    ];
    for (const c of cases) {
      const before = daemon.requests.length;
      const viaShim = await shim('azure-vnet', { CNI_COMMAND: 'VERSION' }, c.stdin);
      const node = await runInProcess({ env: { CNI_COMMAND: 'VERSION' }, stdin: c.stdin, dir });
      t.equal(daemon.requests.length - before, c.forwarded ? 1 : 0, `${c.name}: ${c.forwarded ? 'forwarded' : 'not forwarded'}`);
      t.equal(viaShim.stdout, node.stdout, `${c.name}: same VERSION answer as the plugin standalone`);
      t.equal(viaShim.code, node.code, `${c.name}: same exit code`);
    }
  });

  t.test('no usable socket: the Node plugin runs, with stdin replayed', async (t) => {
    const conf = baseConfig(dir, '1.0.0');
    // A socket file nobody listens on (ECONNREFUSED) and a path that does not exist (ENOENT).
    const stale = path.join(dir, 'stale.sock');
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(stale, r));
    await new Promise<void>((r) => srv.close(() => r()));
    fs.closeSync(fs.openSync(stale + '.file', 'w'));
    for (const [what, socket] of [['stale socket', stale], ['missing path', path.join(dir, 'nothing.sock')], ['not a socket', stale + '.file'], ['no daemonSocket', undefined]] as const) {
      const stdin = JSON.stringify({ ...conf, mode: 'sideways', ...(socket ? { daemonSocket: socket } : {}) });
      const env = { ...CALL_ENV, CNI_COMMAND: 'ADD' };
      const viaShim = await shim('azure-vnet', env, stdin);
      const node = await runInProcess({ env: { ...env }, stdin: stdin, dir });
      t.equal(viaShim.stdout, node.stdout, `${what}: identical to the plugin standalone (${viaShim.stdout.trim().slice(0, 100)})`);
      t.equal(viaShim.code, 1, `${what}: exit 1 for the bad config`);
    }
    // A full ADD through the replayed stdin: a test-only install tree whose
    // bin/azure-vnet is the fake plugin entry (the shim finds its launcher from
    // its own real path), so the fallback's agent is the fake one.
    const root = path.join(dir, 'fake-install');
    fs.mkdirSync(path.join(root, 'dist', 'shim'), { recursive: true });
    fs.mkdirSync(path.join(root, 'bin'));
    fs.copyFileSync(path.join(SHIM_DIR, 'cni-shim'), path.join(root, 'dist', 'shim', 'cni-shim'));
    fs.chmodSync(path.join(root, 'dist', 'shim', 'cni-shim'), 0o755);
    fs.symlinkSync('cni-shim', path.join(root, 'dist', 'shim', 'azure-vnet'));
    fs.writeFileSync(path.join(root, 'bin', 'azure-vnet'), `import(${JSON.stringify(pathToFileURL(FAKE_PLUGIN).href)});\n`);
    const before = daemon.requests.length;
    const stdin = JSON.stringify({ ...conf, daemonSocket: stale });
    const viaShim = await runBinary({ executable: path.join(root, 'dist', 'shim', 'azure-vnet'), env: { ...CALL_ENV, CNI_COMMAND: 'ADD' }, stdin, dir });
    const standalone = await runInProcess({ env: { ...CALL_ENV, CNI_COMMAND: 'ADD' }, stdin, dir });
    t.equal(viaShim.stdout, standalone.stdout, `ADD result identical through the exec fallback (${viaShim.stderr.slice(0, 200)})`);
    t.equal(viaShim.code, 0);
    t.same(viaShim.calls.map((c) => c.method), ['factory', 'add', 'close'], 'the fallback process\'s (fake) agent did the ADD');
    t.equal(daemon.requests.length, before, 'the daemon was not asked');
  });

  t.test('oversized stdin', async (t) => {
    const big = JSON.stringify({ ...baseConfig(dir, '1.0.0', { daemonSocket: daemon.socketPath }), pad: 'x'.repeat(1024 * 1024) });
    for (const command of ['ADD', 'VERSION']) {
      const env = { ...CALL_ENV, CNI_COMMAND: command };
      const viaShim = await shim('azure-vnet', env, big);
      const node = await runInProcess({ env: { ...env }, stdin: big, dir });
      t.equal(viaShim.stdout, node.stdout, `${command}: identical to the plugin standalone (${viaShim.stdout.trim().slice(0, 100)})`);
      t.equal(viaShim.code, node.code, `${command}: exit ${node.code}`);
    }
    const add = await shim('azure-vnet', { ...CALL_ENV, CNI_COMMAND: 'ADD' }, big);
    t.equal(cniCode(add.stdout), 6, 'ADD: decode failure, code 6');
  });

  /** A fake daemon speaking the frame protocol: `answer` decides what happens to each request. */
  async function fakeDaemon(t: Test, name: string, answer: (sock: net.Socket, verb: number) => void): Promise<{ socketPath: string; seen: number[] }> {
    const socketPath = path.join(dir, `${name}.sock`);
    const seen: number[] = [];
    const srv = net.createServer((sock) => {
      const reader = new FrameReader();
      sock.on('error', () => {});
      sock.on('data', (chunk) => {
        for (const f of reader.push(chunk)) {
          const req = decodeRequest(f);
          seen.push(req.verb);
          answer(sock, req.verb);
        }
      });
    });
    await new Promise<void>((r) => srv.listen(socketPath, r));
    t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
    return { socketPath, seen };
  }

  t.test('the daemon dies after taking the request: try again later, not a second run', async (t) => {
    const dying = await fakeDaemon(t, 'dying', (sock) => sock.destroy());
    const res = await shim('azure-vnet', { ...CALL_ENV, CNI_COMMAND: 'ADD' }, JSON.stringify(baseConfig(dir, '1.0.0', { daemonSocket: dying.socketPath })));
    t.same(dying.seen, [Verb.INVOKE], 'the request reached the daemon');
    t.equal(res.code, 1);
    t.same(JSON.parse(res.stdout), { cniVersion: '1.0.0', code: 11, msg: 'the node daemon closed the connection before answering' }, 'CNI error 11, as the Node forwarding client says');
  });

  t.test('a daemon that refuses the request (e.g. one without INVOKE): the call runs standalone', async (t) => {
    const old = await fakeDaemon(t, 'old', (sock) => sock.end(frame(encodeResponse({ ok: false, resultJson: '', error: { cniCode: 6, code: 'EDECODE', message: 'unknown verb 9', details: '' } }))));
    const stdin = JSON.stringify(baseConfig(dir, '1.0.0', { daemonSocket: old.socketPath }));
    const res = await shim('azure-vnet', { CNI_COMMAND: 'VERSION' }, stdin);
    const node = await runInProcess({ env: { CNI_COMMAND: 'VERSION' }, stdin: stdin, dir });
    // The shim asks first; the Node launcher it falls back to asks once more (it forwards the same way), then runs it.
    t.same(old.seen, [Verb.INVOKE, Verb.INVOKE], 'asked the daemon first');
    t.equal(res.stdout, node.stdout, 'then answered like the plugin standalone');
    t.equal(res.code, 0);
  });

  t.test('`azure-vnet debug` works from a terminal: it never reads stdin', async (t) => {
    // A pipe nobody writes to or closes, as a terminal nobody types into: a
    // shim that read stdin first would wait forever. The bound is only a
    // safety net for a broken shim.
    const stateDir = path.join(dir, 'debug-state');
    fs.mkdirSync(stateDir);
    for (const args of [['debug', '--help'], ['debug', 'pool', '--json', '--state-dir', stateDir, '--socket', path.join(dir, 'no-daemon.sock')]]) {
      const child = spawn(path.join(SHIM_DIR, 'azure-vnet'), args, { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      const safety = setTimeout(() => child.kill('SIGKILL'), 60_000);
      const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
      clearTimeout(safety);
      child.stdin.destroy();
      t.equal(code, 0, `azure-vnet ${args.join(' ')}: exits 0 with stdin still open (${stderr.slice(0, 200)})`);
      if (args[1] === '--help') t.match(stdout, /usage: vnetctl debug/, 'prints the debug usage');
      else t.doesNotThrow(() => JSON.parse(stdout) as unknown, 'prints the pool view as JSON');
    }
  });
});
