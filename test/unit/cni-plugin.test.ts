// The CNI front end of azure-vnet and azure-vnet-ipam (cni/skel.ts runPlugin),
// run in this process with CNI env and stdin and a fake agent behind it:
// exact result JSON per spec version, VERSION, version gating, bad input
// rejected before the agent exists, and stdout holding one JSON document every
// time. The plugin processes themselves (stdout guard, launchers, symlinks)
// are test/lab/plugin-binary.test.ts.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import type { CniCall } from '../../cni/types.js';
import { baseConfig, oneJsonDoc, runInProcess as runBinary, tempDir, verbs } from './cni-helpers.js';

const ALL = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];
const DNS = '"dns":{"nameservers":["168.63.129.16"],"search":["default.svc.cluster.local"]}';
const ROUTES = '"routes":[{"dst":"0.0.0.0/0","gw":"10.240.0.1"}]';

/** FIXED_RESULT (cni-fake-agent.ts) as each version must print it, byte for byte. */
const EXPECTED_ADD: Record<string, string> = {
  legacy:
    '{"cniVersion":"V","interfaces":[{"name":"azv5f1c0a2b3","mac":"aa:aa:aa:00:00:01"},' +
    '{"name":"eth0","mac":"aa:aa:aa:00:00:02","sandbox":"/var/run/netns/fake"}],' +
    '"ips":[{"version":"4","interface":1,"address":"10.240.0.5/16","gateway":"10.240.0.1"},' +
    `{"version":"4","interface":1,"address":"10.240.0.6/16"}],${ROUTES},${DNS}}\n`,
  '1.0.0':
    '{"cniVersion":"1.0.0","interfaces":[{"name":"azv5f1c0a2b3","mac":"aa:aa:aa:00:00:01"},' +
    '{"name":"eth0","mac":"aa:aa:aa:00:00:02","sandbox":"/var/run/netns/fake"}],' +
    '"ips":[{"interface":1,"address":"10.240.0.5/16","gateway":"10.240.0.1"},' +
    `{"interface":1,"address":"10.240.0.6/16"}],${ROUTES},${DNS}}\n`,
  '1.1.0':
    '{"cniVersion":"1.1.0","interfaces":[{"name":"azv5f1c0a2b3","mac":"aa:aa:aa:00:00:01"},' +
    '{"name":"eth0","mac":"aa:aa:aa:00:00:02","mtu":1500,"sandbox":"/var/run/netns/fake"}],' +
    '"ips":[{"interface":1,"address":"10.240.0.5/16","gateway":"10.240.0.1"},' +
    `{"interface":1,"address":"10.240.0.6/16"}],${ROUTES},${DNS}}\n`,
};

function expectedAdd(version: string): string {
  return (EXPECTED_ADD[version] ?? EXPECTED_ADD.legacy!).replace('"cniVersion":"V"', `"cniVersion":"${version}"`);
}

t.test('ADD prints the exact result for every supported cniVersion', async (t) => {
  const dir = tempDir(t, 'add');
  const netns = path.join(dir, 'netns');
  fs.writeFileSync(netns, '');
  for (const version of ALL) {
    const r = await runBinary({
      dir,
      env: {
        CNI_COMMAND: 'ADD',
        CNI_CONTAINERID: 'c0ffee-1',
        CNI_NETNS: netns,
        CNI_IFNAME: 'eth0',
        CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0',
        CNI_PATH: '/opt/cni/bin',
      },
      stdin: JSON.stringify(baseConfig(dir, version)),
    });
    t.equal(r.code, 0, `${version}: exit 0 (stderr: ${r.stderr.slice(0, 300)})`);
    t.equal(r.stdout, expectedAdd(version), `${version}: exact result`);
    t.same(verbs(r.calls), ['add'], `${version}: agent.add called once`);
    t.equal(r.calls.at(-1)?.method, 'close', `${version}: agent closed`);
    const add = r.calls.find((c) => c.method === 'add') as { call: CniCall } | undefined;
    t.match(add?.call, {
      containerId: 'c0ffee-1',
      netns,
      ifName: 'eth0',
      args: { K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: 'web-0', IgnoreUnknown: '1' },
      config: { cniVersion: version, name: 'azure', dataplane: 'iptables', maxPods: 250, ipam: { environment: 'azure' } },
    });
  }
  const log = fs.readFileSync(path.join(dir, 'azure-vnet.log'), 'utf8').trim().split('\n');
  t.ok(log.length >= ALL.length * 2, 'each call logged to the configured logFile');
  t.ok(
    log.every((l) => (JSON.parse(l) as { name?: string }).name === 'azure-vnet'),
    'log lines are JSON from azure-vnet',
  );
});

t.test('VERSION', async (t) => {
  const dir = tempDir(t, 'version');
  const supported = '"supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]';
  const cases = [
    { stdin: '{"cniVersion":"1.0.0"}', want: `{"cniVersion":"1.0.0",${supported}}\n` },
    { stdin: '{"cniVersion":"0.3.1"}', want: `{"cniVersion":"0.3.1",${supported}}\n` },
    { stdin: '', want: `{"cniVersion":"1.1.0",${supported}}\n` },
    { stdin: 'not json', want: `{"cniVersion":"1.1.0",${supported}}\n` },
  ];
  for (const plugin of ['azure-vnet', 'azure-vnet-ipam'] as const) {
    for (const c of cases) {
      const r = await runBinary({ dir, plugin, env: { CNI_COMMAND: 'VERSION' }, stdin: c.stdin });
      t.equal(r.code, 0, `${plugin} ${JSON.stringify(c.stdin)}: exit 0`);
      t.equal(r.stdout, c.want, `${plugin} ${JSON.stringify(c.stdin)}: exact output`);
      t.same(r.calls, [], 'no agent for VERSION');
    }
  }
});

interface Rejection {
  name: string;
  env?: Record<string, string | undefined>;
  /** Config overrides; a string replaces stdin entirely. */
  config?: Record<string, unknown> | string;
  code: number;
  msg: RegExp;
  plugin?: 'azure-vnet' | 'azure-vnet-ipam';
}

const REJECTIONS: Rejection[] = [
  { name: 'unknown cniVersion', config: { cniVersion: '0.2.0' }, code: 1, msg: /cniVersion "0\.2\.0" is not supported; supported: 0\.3\.0, 0\.3\.1, 0\.4\.0, 1\.0\.0, 1\.1\.0/ },
  { name: 'future cniVersion', config: { cniVersion: '2.0.0' }, code: 1, msg: /not supported/ },
  { name: 'missing cniVersion', config: { cniVersion: undefined }, code: 1, msg: /cniVersion is missing/ },
  { name: 'CHECK on 0.3.0', env: { CNI_COMMAND: 'CHECK' }, config: { cniVersion: '0.3.0' }, code: 1, msg: /does not allow CHECK/ },
  { name: 'CHECK on 0.3.1', env: { CNI_COMMAND: 'CHECK' }, config: { cniVersion: '0.3.1' }, code: 1, msg: /does not allow CHECK/ },
  { name: 'GC on 1.0.0', env: { CNI_COMMAND: 'GC' }, config: { cniVersion: '1.0.0' }, code: 1, msg: /does not allow GC; it needs cniVersion 1\.1\.0/ },
  { name: 'STATUS on 1.0.0', env: { CNI_COMMAND: 'STATUS' }, config: { cniVersion: '1.0.0' }, code: 1, msg: /does not allow STATUS/ },
  { name: 'empty stdin', config: '', code: 6, msg: /stdin is empty/ },
  { name: 'malformed JSON', config: '{"cniVersion": "1.1.0",', code: 6, msg: /not valid JSON/ },
  { name: 'JSON but not an object', config: '[1,2]', code: 6, msg: /must be a JSON object/ },
  { name: 'oversized stdin', config: `{"pad":"${'x'.repeat(1024 * 1024)}"}`, code: 6, msg: /larger than 1048576 bytes/ },
  { name: 'missing CNI_COMMAND', env: { CNI_COMMAND: undefined }, code: 4, msg: /CNI_COMMAND is not set/ },
  { name: 'unknown CNI_COMMAND', env: { CNI_COMMAND: 'ATTACH' }, code: 4, msg: /CNI_COMMAND "ATTACH" is unknown/ },
  { name: 'missing netns on ADD', env: { CNI_NETNS: undefined }, code: 4, msg: /CNI_NETNS is required for ADD/ },
  { name: 'netns that does not exist', env: { CNI_NETNS: '/var/run/netns/vnet-cni-no-such-ns' }, code: 4, msg: /CNI_NETNS .* does not exist/ },
  { name: 'relative netns', env: { CNI_NETNS: 'netns/x' }, code: 4, msg: /CNI_NETNS "netns\/x" is invalid: it must be an absolute path/ },
  { name: 'missing container ID', env: { CNI_CONTAINERID: undefined }, code: 4, msg: /CNI_CONTAINERID is required for ADD/ },
  { name: 'container ID with path characters', env: { CNI_CONTAINERID: '../../etc' }, code: 4, msg: /CNI_CONTAINERID "\.\.\/\.\.\/etc" is invalid/ },
  { name: 'container ID with a slash inside', env: { CNI_CONTAINERID: 'abc/def' }, code: 4, msg: /CNI_CONTAINERID "abc\/def" is invalid/ },
  { name: 'missing ifname', env: { CNI_IFNAME: undefined }, code: 4, msg: /CNI_IFNAME is required/ },
  { name: 'ifname too long', env: { CNI_IFNAME: 'eth0123456789012' }, code: 4, msg: /CNI_IFNAME "eth0123456789012" is invalid: it is longer than 15 bytes/ },
  { name: 'ifname with slash', env: { CNI_IFNAME: 'eth/0' }, code: 4, msg: /CNI_IFNAME "eth\/0" is invalid: it must not contain/ },
  { name: 'ifname ..', env: { CNI_IFNAME: '..' }, code: 4, msg: /CNI_IFNAME "\.\." is invalid/ },
  { name: 'ifname with space', env: { CNI_IFNAME: 'eth 0' }, code: 4, msg: /CNI_IFNAME "eth 0" is invalid/ },
  { name: 'CNI_ARGS pair without =', env: { CNI_ARGS: 'K8S_POD_NAME' }, code: 4, msg: /CNI_ARGS entry "K8S_POD_NAME" is not KEY=VALUE/ },
  { name: 'CNI_ARGS unknown key without IgnoreUnknown', env: { CNI_ARGS: 'K8S_POD_NAME=a;FOO=1' }, code: 4, msg: /CNI_ARGS has unknown keys "FOO"; add IgnoreUnknown=1/ },
  { name: 'CNI_ARGS bad IgnoreUnknown', env: { CNI_ARGS: 'IgnoreUnknown=maybe' }, code: 4, msg: /IgnoreUnknown="maybe" is invalid/ },
  { name: 'unknown ipam environment', config: { ipam: { type: 'azure-vnet-ipam', environment: 'foo' } }, code: 7, msg: /^ipam\.environment must be one of azure, fileIpam, static, kubernetes; got 'foo'$/ },
  { name: 'bad vnetCidrs entry', config: { vnetCidrs: ['10.0.0.0/8', '300.1.0.0/16'] }, code: 7, msg: /^vnetCidrs\[1\] must be an IPv4 CIDR such as 10\.240\.0\.0\/16; got '300\.1\.0\.0\/16'$/ },
  { name: 'vnetCidrs not a list', config: { vnetCidrs: 5 }, code: 7, msg: /^vnetCidrs must be a list of IPv4 CIDRs/ },
  { name: 'maxPods 0', config: { maxPods: 0 }, code: 7, msg: /^maxPods must be an integer from 1 to 250; got 0$/ },
  { name: 'maxPods 251', config: { maxPods: 251 }, code: 7, msg: /^maxPods must be an integer from 1 to 250; got 251$/ },
  { name: 'unknown mode', config: { mode: 'tunnel' }, code: 7, msg: /^mode 'tunnel' is not supported by vnet-cni: that pod shape is not built; use "mode": "bridge" or "transparent"$/ },
  { name: 'unknown dataplane', config: { dataplane: 'xdp' }, code: 7, msg: /^dataplane must be one of iptables, bridge-iptables, ebpf; got 'xdp'$/ },
  { name: 'relative logFile', config: { logFile: 'azure.log' }, code: 7, msg: /^logFile must be an absolute path; got 'azure\.log'$/ },
  { name: 'bad network name', config: { name: '../azure' }, code: 7, msg: /^name must be a network name/ },
  { name: 'bad prevResult', config: { prevResult: { ips: [{ address: '10.0.0.5' }] } }, code: 7, msg: /^prevResult\.ips\[0\]\.address must be an address with a prefix length/ },
  { name: 'ipam plugin: unknown environment', plugin: 'azure-vnet-ipam', config: { ipam: { type: 'azure-vnet-ipam', environment: 'mas' } }, code: 7, msg: /ipam\.environment must be one of/ },
];

t.test('bad input is rejected with the right code, a message naming the field, and no agent', async (t) => {
  const dir = tempDir(t, 'reject');
  const netns = path.join(dir, 'netns');
  fs.writeFileSync(netns, '');
  const goodEnv: Record<string, string> = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c0ffee-2', CNI_NETNS: netns, CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' };
  for (const c of REJECTIONS) {
    const env = { ...goodEnv };
    for (const [k, v] of Object.entries(c.env ?? {})) {
      if (v === undefined) delete env[k];
      else env[k] = v;
    }
    const stdin = typeof c.config === 'string' ? c.config : JSON.stringify({ ...baseConfig(dir, '1.1.0'), ...c.config });
    const r = await runBinary({ dir, env, stdin, ...(c.plugin ? { plugin: c.plugin } : {}) });
    const doc = oneJsonDoc(t, r.stdout);
    t.equal(r.code, 1, `${c.name}: exit 1`);
    t.equal(doc.code, c.code, `${c.name}: code ${c.code} (msg: ${String(doc.msg)})`);
    t.match(doc.msg, c.msg, `${c.name}: message`);
    t.same(r.calls, [], `${c.name}: agent never created`);
  }
});

t.test('errors carry the requested cniVersion when it looks like one', async (t) => {
  const dir = tempDir(t, 'errver');
  const r = await runBinary({ dir, env: { CNI_COMMAND: 'ADD' }, stdin: JSON.stringify(baseConfig(dir, '0.4.0')) });
  t.same(oneJsonDoc(t, r.stdout), { cniVersion: '0.4.0', code: 4, msg: 'CNI_CONTAINERID, CNI_IFNAME, CNI_NETNS are required for ADD' });
});

t.test('an agent error is the only thing on stdout', async (t) => {
  const dir = tempDir(t, 'agenterr');
  const netns = path.join(dir, 'netns');
  fs.writeFileSync(netns, '');
  const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: netns, CNI_IFNAME: 'eth0' };
  const failed = await runBinary({ dir, env, fakeError: 'TryAgainError:pool busy', stdin: JSON.stringify(baseConfig(dir, '1.0.0')) });
  t.equal(failed.code, 1);
  t.same(oneJsonDoc(t, failed.stdout), { cniVersion: '1.0.0', code: 11, msg: 'pool busy' }, 'error alone on stdout');
  t.equal(failed.calls.at(-1)?.method, 'close', 'agent closed after a failed verb');
});

t.test('DEL succeeds without CNI_NETNS or with a namespace that is gone', async (t) => {
  const dir = tempDir(t, 'del');
  for (const netns of [undefined, '/var/run/netns/vnet-cni-gone-ns']) {
    const env: Record<string, string> = { CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'c2', CNI_IFNAME: 'eth0' };
    if (netns) env.CNI_NETNS = netns;
    const r = await runBinary({ dir, env, stdin: JSON.stringify(baseConfig(dir, '1.0.0')) });
    t.equal(r.code, 0, `netns ${netns ?? 'unset'}: exit 0 (${r.stdout})`);
    t.equal(r.stdout, '', 'DEL prints nothing');
    t.same(verbs(r.calls), ['del']);
    t.match(r.calls.find((c) => c.method === 'del'), { call: { containerId: 'c2', netns: netns ?? '' } });
  }
});

t.test('CHECK, GC and STATUS reach the agent', async (t) => {
  const dir = tempDir(t, 'verbs');
  const netns = path.join(dir, 'netns');
  fs.writeFileSync(netns, '');
  const prevResult = { cniVersion: '1.1.0', interfaces: [{ name: 'eth0', mac: 'aa:aa:aa:00:00:02', sandbox: netns }], ips: [{ address: '10.240.0.5/16', interface: 0 }] };
  const check = await runBinary({
    dir,
    env: { CNI_COMMAND: 'CHECK', CNI_CONTAINERID: 'c3', CNI_NETNS: netns, CNI_IFNAME: 'eth0' },
    stdin: JSON.stringify(baseConfig(dir, '1.1.0', { prevResult })),
  });
  t.equal(check.code, 0);
  t.equal(check.stdout, '');
  t.match(check.calls.find((c) => c.method === 'check'), { call: { containerId: 'c3', prevResult: { ips: [{ address: '10.240.0.5/16', interface: 0 }] } } });

  const valid = [
    { containerID: 'c3', ifname: 'eth0' },
    { containerID: 'c4', ifname: 'eth1' },
  ];
  const gc = await runBinary({ dir, env: { CNI_COMMAND: 'GC' }, stdin: JSON.stringify(baseConfig(dir, '1.1.0', { 'cni.dev/valid-attachments': valid })) });
  t.equal(gc.code, 0, gc.stdout);
  t.match(gc.calls.find((c) => c.method === 'gc'), {
    valid: [
      { containerId: 'c3', ifName: 'eth0' },
      { containerId: 'c4', ifName: 'eth1' },
    ],
  });
  const old = await runBinary({ dir, env: { CNI_COMMAND: 'GC' }, stdin: JSON.stringify(baseConfig(dir, '1.1.0', { 'cni.dev/attachments': [valid[0]] })) });
  t.match(old.calls.find((c) => c.method === 'gc'), { valid: [{ containerId: 'c3', ifName: 'eth0' }] }, 'draft key cni.dev/attachments');
  const badGc = await runBinary({ dir, env: { CNI_COMMAND: 'GC' }, stdin: JSON.stringify(baseConfig(dir, '1.1.0', { 'cni.dev/valid-attachments': [{ ifname: 'eth0' }] })) });
  t.match(oneJsonDoc(t, badGc.stdout), { code: 7, msg: /cni\.dev\/valid-attachments\[0\]\.containerID/ });
  t.same(badGc.calls, [], 'bad GC list rejected before the agent');

  const status = await runBinary({ dir, env: { CNI_COMMAND: 'STATUS' }, stdin: JSON.stringify(baseConfig(dir, '1.1.0')) });
  t.equal(status.code, 0);
  t.same(verbs(status.calls), ['status']);
  const notReady = await runBinary({ dir, env: { CNI_COMMAND: 'STATUS' }, fakeError: 'NotReadyError:pool empty', stdin: JSON.stringify(baseConfig(dir, '1.1.0')) });
  t.same(oneJsonDoc(t, notReady.stdout), { cniVersion: '1.1.0', code: 50, msg: 'pool empty' });
});

t.test('azure-vnet-ipam maps ADD/DEL to ipamAdd/ipamDel', async (t) => {
  const dir = tempDir(t, 'ipam');
  const netns = path.join(dir, 'netns');
  fs.writeFileSync(netns, '');
  const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c5', CNI_NETNS: netns, CNI_IFNAME: 'eth0' };
  // As the bridge plugin would delegate: its own config with an azure-vnet-ipam section.
  const bridgeConf = { cniVersion: '0.4.0', name: 'br', type: 'bridge', bridge: 'cni0', mode: 'whatever-bridge-means', ipam: { type: 'azure-vnet-ipam', environment: 'static', subnet: '10.240.0.0/16', addresses: ['10.240.0.7'] }, logFile: path.join(dir, 'ipam.log') };
  const add = await runBinary({ dir, plugin: 'azure-vnet-ipam', env, stdin: JSON.stringify(bridgeConf) });
  t.equal(add.code, 0, add.stdout);
  t.equal(add.stdout, '{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.240.0.7/16","gateway":"10.240.0.1"}],"routes":[{"dst":"0.0.0.0/0","gw":"10.240.0.1"}]}\n');
  t.same(verbs(add.calls), ['ipamAdd']);
  const del = await runBinary({ dir, plugin: 'azure-vnet-ipam', env: { ...env, CNI_COMMAND: 'DEL' }, stdin: JSON.stringify(bridgeConf) });
  t.equal(del.code, 0);
  t.same(verbs(del.calls), ['ipamDel']);
  t.ok(fs.existsSync(path.join(dir, 'ipam.log')), 'ipam plugin logs to its logFile');
});
