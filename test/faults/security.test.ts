// Security checks: no shell ever sees input, durable state and the daemon
// socket are root-only, CNI identifiers cannot escape, logs cannot be forged
// with newlines, and a config cannot make the plugin run another program.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { runPlugin } from '../../cni/skel.js';
import { DaemonServer } from '../../control/daemon/server.js';
import { createLogger } from '../../control/log.js';
import { writeFileAtomic } from '../../control/store/atomic-file.js';
import { fakeAgent } from '../unit/cni-fake-agent.js';
import { REPO_ROOT, runBinary, tempDir } from '../unit/cni-helpers.js';
import { FaultTally } from './helpers/report.js';

const tally = new FaultTally('security');
const PRODUCT_DIRS = ['cni', 'control', 'native', 'bin'];

function sourceFiles(dir: string, out: string[] = []): string[] {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory() && !['build', 'node_modules'].includes(e.name)) sourceFiles(p, out);
    else if (e.isFile() && (/\.(ts|mjs|js)$/.test(e.name) || dir.endsWith('bin')) && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

t.test('no shell: product code spawns only through control/exec.ts, with argv arrays', async (t) => {
  const files = PRODUCT_DIRS.flatMap((d) => sourceFiles(path.join(REPO_ROOT, d)));
  t.ok(files.length > 20, `${files.length} product files scanned`);
  const offenders: string[] = [];
  for (const f of files) {
    const rel = path.relative(REPO_ROOT, f);
    const text = fs.readFileSync(f, 'utf8');
    if (/['"](node:)?child_process['"]/.test(text) && rel !== 'control/exec.ts') offenders.push(`${rel}: imports child_process`);
    if (/\bshell\s*:\s*(true|['"`])/.test(text)) offenders.push(`${rel}: shell option`);
    if (/\b(execSync|execFileSync|spawnSync)\b|\bexec\(\s*['"`]/.test(text)) offenders.push(`${rel}: exec/sync spawn`);
    if (/['"](\/bin\/)?(ba|da)?sh['"]\s*,\s*['"]-c['"]/.test(text)) offenders.push(`${rel}: sh -c`);
  }
  const exec = fs.readFileSync(path.join(REPO_ROOT, 'control', 'exec.ts'), 'utf8');
  t.match(exec, /spawn\(file, args/, 'exec.ts spawns argv[0] with the rest as arguments');
  t.same(offenders, [], 'no other spawn path, no shell');
  tally.add('security', 'grep for shell spawns in product code', offenders.length ? 'FOUND' : 'none found', files.length);
});

t.test('state files, their directory and the daemon socket are root-only', async (t) => {
  const dir = tempDir(t, 'faults-sec');
  const old = process.umask(0); // the most permissive umask a caller could have
  try {
    const file = path.join(dir, 'state', 'node.json');
    await writeFileAtomic(file, '{}');
    t.equal(fs.statSync(file).mode & 0o777, 0o600, 'state file 0600 even with umask 0');
    t.equal(fs.statSync(path.dirname(file)).mode & 0o777, 0o700, 'state dir 0700');
    const socketPath = path.join(dir, 'run', 'vnet-cni.sock');
    const server = new DaemonServer({ socketPath, agent: fakeAgent(() => {}), logger: createLogger({ name: 'sec', level: 'silent' }) });
    await server.listen();
    try {
      t.equal(fs.statSync(socketPath).mode & 0o777, 0o600, 'daemon socket 0600');
      t.equal(fs.statSync(path.dirname(socketPath)).mode & 0o777, 0o700, 'socket dir 0700');
    } finally {
      await server.close();
    }
  } finally {
    process.umask(old);
  }
  tally.add('security', 'state file / socket modes under umask 0', 'root-only (0600/0700)', 4);
});

t.test('container IDs, ifnames and netns paths that try to escape are refused before the agent', async (t) => {
  const dir = tempDir(t, 'faults-sec');
  const cases: Array<[string, Record<string, string>]> = [
    ['containerId ../', { CNI_CONTAINERID: '../../etc/passwd' }],
    ['containerId with /', { CNI_CONTAINERID: 'a/../../b' }],
    ['containerId ..', { CNI_CONTAINERID: '..' }],
    ['containerId with NUL-free newline', { CNI_CONTAINERID: 'a\nb' }],
    ['ifname ..', { CNI_IFNAME: '..' }],
    ['ifname with /', { CNI_IFNAME: '../x' }],
    ['netns relative', { CNI_NETNS: '../../proc/1/ns/net' }],
  ];
  for (const [name, env] of cases) {
    const out: string[] = [];
    let created = false;
    const code = await runPlugin({
      plugin: 'azure-vnet',
      env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_IFNAME: 'eth0', CNI_NETNS: '/proc/self/ns/net', ...env },
      stdin: JSON.stringify({ cniVersion: '1.1.0', name: 'azure', type: 'azure-vnet', stateDir: path.join(dir, 'state') }),
      stdout: { write: (s: string) => out.push(s) },
      loggerFactory: () => createLogger({ name: 'sec', level: 'silent' }),
      agentFactory: async () => {
        created = true;
        return fakeAgent(() => {});
      },
    });
    t.equal(code, 1, `${name}: refused`);
    t.equal((JSON.parse(out.join('')) as { code: number }).code, 4, `${name}: code 4 (invalid env)`);
    t.notOk(created, `${name}: agent never created`);
    tally.add('security', `escape attempt: ${name}`, 'refused, code 4, no agent');
  }
  t.same(fs.existsSync(path.join(dir, 'state')) ? fs.readdirSync(path.join(dir, 'state')) : [], [], 'nothing written under the state dir');
});

t.test('a newline in a pod name cannot forge a log line', async (t) => {
  const dir = tempDir(t, 'faults-sec');
  const logFile = path.join(dir, 'azure-vnet.log');
  const forged = 'pod\n{"level":50,"time":0,"msg":"forged"}\n';
  const code = await runPlugin({
    plugin: 'azure-vnet',
    env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_IFNAME: 'eth0', CNI_NETNS: '/proc/self/ns/net', CNI_ARGS: `K8S_POD_NAME=${forged};K8S_POD_NAMESPACE=ns\r\nx` },
    stdin: JSON.stringify({ cniVersion: '1.1.0', name: 'azure', type: 'azure-vnet', logFile }),
    stdout: { write: () => {} },
    agentFactory: async () => fakeAgent(() => {}),
    loggerFactory: (config, name) => createLogger({ file: config.logFile, level: config.logLevel, name }),
  });
  t.equal(code, 0, 'the call itself is valid');
  const lines = fs.readFileSync(logFile, 'utf8').split('\n').filter(Boolean);
  t.ok(lines.length >= 2, `${lines.length} log lines (call, done)`);
  const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  t.notOk(parsed.some((l) => l.msg === 'forged'), 'no forged line');
  t.ok(parsed.some((l) => JSON.stringify(l).includes('forged')), 'the hostile value is logged, inside a JSON string');
  tally.add('security', 'newline-forged pod name in the log', 'escaped inside one JSON line');
});

t.test('a conflist cannot make the plugin execute anything (type, ipam.type, CNI_PATH)', async (t) => {
  const dir = tempDir(t, 'faults-sec');
  const binDir = path.join(dir, 'cni-bin');
  const marker = path.join(dir, 'executed');
  fs.mkdirSync(binDir);
  for (const name of ['evil', 'host-local', 'azure-vnet-ipam', 'portmap', 'sh']) {
    fs.writeFileSync(path.join(binDir, name), `#!/bin/sh\necho ${name} >> ${marker}\n`, { mode: 0o755 });
  }
  const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_IFNAME: 'eth0', CNI_NETNS: '/proc/self/ns/net', CNI_PATH: binDir };
  const configs: Array<[string, Record<string, unknown>, 'azure-vnet' | 'azure-vnet-ipam']> = [
    ['type names a program in CNI_PATH', { type: 'evil' }, 'azure-vnet'],
    ['type is an absolute path', { type: path.join(binDir, 'evil') }, 'azure-vnet'],
    ['ipam.type names a delegate', { type: 'azure-vnet', ipam: { type: 'host-local' } }, 'azure-vnet'],
    ['chained after another plugin, with a prevResult', { type: 'portmap', prevResult: { cniVersion: '1.1.0', ips: [] } }, 'azure-vnet-ipam'],
  ];
  for (const [name, extra, plugin] of configs) {
    const r = await runBinary({ plugin, env, dir, stdin: JSON.stringify({ cniVersion: '1.1.0', name: 'azure', logFile: path.join(dir, 'log'), ...extra }) });
    t.ok(r.code === 0 || r.code === 1, `${name}: exit ${r.code}`);
    tally.add('security', `conflist exec attempt: ${name}`, fs.existsSync(marker) ? 'EXECUTED' : `nothing executed (exit ${r.code})`);
  }
  t.notOk(fs.existsSync(marker), `no program from CNI_PATH ran: ${fs.existsSync(marker) ? fs.readFileSync(marker, 'utf8') : ''}`);
  tally.flush();
});
