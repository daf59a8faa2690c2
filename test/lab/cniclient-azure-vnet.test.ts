// The plugin front end as a process (test/support/fake-plugin.ts: the real
// CNI front end with a fake agent, installed in CNI_PATH as azure-vnet) driven by
// the Go libcni client the way kubelet's runtime would: results parse in
// libcni for 0.3.1 and 1.0.0, capability args and CNI_ARGS arrive, the cached
// result comes back as prevResult on CHECK and DEL, and the client's own
// 1.1.0 chain carries GC (with valid attachments) and STATUS.
import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import type { Attachment, CniCall } from '../../cni/types.js';
import type { FakeCall } from '../unit/cni-fake-agent.js';
import { FAKE_PLUGIN, tempDir } from '../unit/cni-helpers.js';
import { buildClient, makeNetns, removeStaleNamespaces, runClient, type Netns } from './cniclient-helpers.js';

// Dozens of plugin processes: more than tap's default 30 s on a busy 2-core machine.
t.setTimeout(300_000);

t.before(async () => {
  await removeStaleNamespaces();
  await buildClient();
});

interface Setup {
  host: Netns;
  dir: string;
  cniPath: string;
  env: NodeJS.ProcessEnv;
  calls: () => FakeCall[];
  conflist: (cniVersion: string) => string;
}

async function setup(t: Test, tag: string): Promise<Setup> {
  const dir = tempDir(t, `az-${tag}`);
  const host = await makeNetns(t, `az${tag}`);
  // A CNI_PATH dir holding azure-vnet, as /opt/cni/bin would: here a launcher of the fake plugin entry.
  const cniPath = path.join(dir, 'bin');
  fs.mkdirSync(cniPath);
  fs.writeFileSync(path.join(cniPath, 'azure-vnet'), `#!/bin/sh\nexec '${process.execPath}' '${FAKE_PLUGIN}' azure-vnet "$@"\n`, { mode: 0o755 });
  const log = path.join(dir, 'calls.jsonl');
  const env = { PATH: process.env.PATH, VNET_CNI_FAKE_LOG: log };
  const conflist = (cniVersion: string): string => {
    const file = path.join(dir, `azure-${cniVersion}.conflist`);
    const plugin = { type: 'azure-vnet', mode: 'bridge', bridge: 'azure0', capabilities: { portMappings: true }, ipam: { type: 'azure-vnet-ipam' }, logFile: path.join(dir, 'azure-vnet.log'), stateDir: path.join(dir, 'state') };
    fs.writeFileSync(file, JSON.stringify({ cniVersion, name: 'azure', plugins: [plugin] }));
    return file;
  };
  const calls = (): FakeCall[] =>
    fs.existsSync(log)
      ? fs
          .readFileSync(log, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as FakeCall)
      : [];
  return { host, dir, cniPath, env, calls, conflist };
}

function lastCall(calls: FakeCall[], method: string): CniCall | undefined {
  return (calls.filter((c) => c.method === method).at(-1) as { call?: CniCall } | undefined)?.call;
}

const PORTS = JSON.stringify({ portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] });

t.test('1.0.0 through libcni: ADD, CHECK, DEL', async (t) => {
  const s = await setup(t, 'v100');
  const common = ['--conflist', s.conflist('1.0.0'), '--container', 'pod-a', '--netns', s.host.path, '--cni-path', s.cniPath, '--cache-dir', path.join(s.dir, 'cache')];
  const add = await runClient(s.host, ['add', ...common, '--args', 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0', '--capability-args', PORTS], s.env);
  t.equal(add.code, 0, add.stderr);
  // libcni parsed our output into its 1.0.0 Result and printed it again: the same content.
  t.same(add.result, {
    cniVersion: '1.0.0',
    interfaces: [
      { name: 'azv5f1c0a2b3', mac: 'aa:aa:aa:00:00:01' },
      { name: 'eth0', mac: 'aa:aa:aa:00:00:02', sandbox: '/var/run/netns/fake' },
    ],
    ips: [
      { interface: 1, address: '10.240.0.5/16', gateway: '10.240.0.1' },
      { interface: 1, address: '10.240.0.6/16' },
    ],
    routes: [{ dst: '0.0.0.0/0', gw: '10.240.0.1' }],
    dns: { nameservers: ['168.63.129.16'], search: ['default.svc.cluster.local'] },
  });
  const addCall = lastCall(s.calls(), 'add');
  t.match(addCall, { containerId: 'pod-a', netns: s.host.path, ifName: 'eth0', args: { K8S_POD_NAME: 'web-0', K8S_POD_NAMESPACE: 'default' } });
  t.same(addCall?.config.raw.runtimeConfig, JSON.parse(PORTS), 'portMappings capability arrived as runtimeConfig');

  const check = await runClient(s.host, ['check', ...common], s.env);
  t.equal(check.code, 0, check.stderr);
  t.match(lastCall(s.calls(), 'check')?.prevResult, { ips: [{ address: '10.240.0.5/16', interface: 1 }] }, 'CHECK got the cached result');
  const del = await runClient(s.host, ['del', ...common], s.env);
  t.equal(del.code, 0, del.stderr);
  t.match(lastCall(s.calls(), 'del')?.prevResult, { interfaces: [{}, { name: 'eth0' }] }, 'DEL got the cached result');
});

t.test('0.3.1 through libcni: the legacy result parses; CHECK is refused by libcni', async (t) => {
  const s = await setup(t, 'v031');
  const common = ['--conflist', s.conflist('0.3.1'), '--container', 'pod-b', '--netns', s.host.path, '--cni-path', s.cniPath, '--cache-dir', path.join(s.dir, 'cache')];
  const add = await runClient(s.host, ['add', ...common], s.env);
  t.equal(add.code, 0, add.stderr);
  t.match(add.result, { cniVersion: '0.3.1', ips: [{ version: '4', interface: 1, address: '10.240.0.5/16' }, { version: '4', interface: 1 }] });
  const check = await runClient(s.host, ['check', ...common], s.env);
  t.equal(check.code, 1);
  t.match(check.error?.msg, /does not support the CHECK command/);
});

t.test('1.1.0 through the exec chain: ADD, GC, STATUS, DEL, and a plugin error', async (t) => {
  const s = await setup(t, 'v110');
  const conflist = s.conflist('1.1.0');
  const common = ['--conflist', conflist, '--container', 'pod-c', '--netns', s.host.path, '--cni-path', s.cniPath, '--cache-dir', path.join(s.dir, 'cache')];
  const add = await runClient(s.host, ['add', ...common, '--capability-args', PORTS], s.env);
  t.equal(add.code, 0, add.stderr);
  t.match(add.result, { cniVersion: '1.1.0', interfaces: [{}, { name: 'eth0', mtu: 1500 }] }, 'our 1.1.0 result, verbatim');
  t.same(lastCall(s.calls(), 'add')?.config.raw.runtimeConfig, JSON.parse(PORTS));

  const valid = [
    { containerID: 'pod-c', ifname: 'eth0' },
    { containerID: 'pod-d', ifname: 'eth0' },
  ];
  const gc = await runClient(s.host, ['gc', '--conflist', conflist, '--cni-path', s.cniPath, '--valid-attachments', JSON.stringify(valid)], s.env);
  t.equal(gc.code, 0, gc.stderr);
  const gcCall = s.calls().find((c) => c.method === 'gc') as { valid: Attachment[] } | undefined;
  t.same(gcCall?.valid, [
    { containerId: 'pod-c', ifName: 'eth0' },
    { containerId: 'pod-d', ifName: 'eth0' },
  ]);

  const status = await runClient(s.host, ['status', '--conflist', conflist, '--cni-path', s.cniPath], s.env);
  t.equal(status.code, 0, status.stderr);
  t.ok(s.calls().some((c) => c.method === 'status'), 'STATUS reached the agent');

  const del = await runClient(s.host, ['del', ...common], s.env);
  t.equal(del.code, 0, del.stderr);
  t.match(lastCall(s.calls(), 'del')?.prevResult, { ips: [{ address: '10.240.0.5/16' }] }, 'DEL got the cached 1.1.0 result');

  const failing = await runClient(s.host, ['add', ...common], { ...s.env, VNET_CNI_FAKE_ERROR: 'PoolExhaustedError:no free address on eth0' });
  t.equal(failing.code, 1);
  t.match(failing.error, { code: 100, msg: 'no free address on eth0' });
  const notReady = await runClient(s.host, ['status', '--conflist', conflist, '--cni-path', s.cniPath], { ...s.env, VNET_CNI_FAKE_ERROR: 'NotReadyError:pool empty' });
  t.match(notReady.error, { code: 50, msg: 'pool empty' });
});
