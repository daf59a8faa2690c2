// The Go libcni client against Debian's reference plugins (bridge +
// host-local + portmap from /usr/lib/cni), inside a throwaway "host"
// namespace: the pod gets an address and pings the bridge gateway, the
// portMappings capability reaches portmap (a hostPort connection lands in the
// pod), CHECK passes then catches a broken pod, DEL cleans up, and plugin
// errors come back as JSON. This is what proves the client before the lab
// reuses it to drive azure-vnet.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { run } from '../../control/exec.js';
import { tempDir } from '../unit/cni-helpers.js';
import { buildClient, CLIENT, inNetns, makeNetns, removeStaleNamespaces, runClient, waitFor } from './cniclient-helpers.js';

// Dozens of plugin processes: more than tap's default 30 s on a busy 2-core machine.
t.setTimeout(300_000);

const REFERENCE_PLUGINS = '/usr/lib/cni';

t.before(async () => {
  await removeStaleNamespaces();
  await buildClient();
});

function writeConflist(dir: string, name: string, plugins: unknown[]): string {
  const file = path.join(dir, `${name}.conflist`);
  fs.writeFileSync(file, JSON.stringify({ cniVersion: '1.0.0', name, plugins }));
  return file;
}

function bridgePlugin(dir: string, bridge: string, subnet: string): Record<string, unknown> {
  return {
    type: 'bridge',
    bridge,
    isGateway: true,
    ipMasq: false,
    ipam: { type: 'host-local', ranges: [[{ subnet }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: path.join(dir, 'ipam') },
  };
}

t.test('bridge + host-local + portmap through libcni', async (t) => {
  const dir = tempDir(t, 'ref');
  const host = await makeNetns(t, 'host');
  const pod = await makeNetns(t, 'pod');
  const conflist = writeConflist(dir, 'refnet', [bridgePlugin(dir, 'cniref0', '10.99.0.0/24'), { type: 'portmap', capabilities: { portMappings: true }, snat: true }]);
  const common = ['--conflist', conflist, '--container', 'ctr-ref-1', '--netns', pod.path, '--ifname', 'eth0', '--cni-path', REFERENCE_PLUGINS, '--cache-dir', path.join(dir, 'cache')];
  const portMappings = JSON.stringify({ portMappings: [{ hostPort: 18080, containerPort: 8080, protocol: 'tcp' }] });

  const add = await runClient(host, ['add', ...common, '--args', 'IgnoreUnknown=1;K8S_POD_NAME=web-0;K8S_POD_NAMESPACE=default', '--capability-args', portMappings]);
  t.equal(add.code, 0, `ADD: ${add.stderr}`);
  const result = add.result as { cniVersion: string; interfaces: Array<{ name: string; sandbox?: string }>; ips: Array<{ address: string; gateway: string; interface: number }> };
  t.equal(result.cniVersion, '1.0.0');
  t.match(result.ips, [{ address: /^10\.99\.0\.\d+\/24$/, gateway: '10.99.0.1' }]);
  const podItf = result.interfaces[result.ips[0]!.interface];
  t.match(podItf, { name: 'eth0', sandbox: pod.path }, 'the ip belongs to eth0 in the pod');

  const addr = await run(['ip', '-n', pod.name, '-j', 'addr', 'show', 'dev', 'eth0']);
  const local = (JSON.parse(addr.stdout) as Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>)[0]?.addr_info.map((a) => `${a.local}/${a.prefixlen}`);
  t.ok(local?.includes(result.ips[0]!.address), `eth0 in the pod carries ${result.ips[0]!.address}`);

  const ping = await inNetns(pod, ['ping', '-c', '1', '-W', '2', '10.99.0.1']);
  t.equal(ping.code, 0, `pod pings the bridge gateway: ${ping.stdout}${ping.stderr}`);

  // portMappings capability: a connection to the host's hostPort lands on the pod's port.
  const payload = path.join(dir, 'payload');
  fs.writeFileSync(payload, 'hello from the pod\n');
  const listener = inNetns(pod, ['socat', '-u', `FILE:${payload}`, 'TCP-LISTEN:8080,reuseaddr'], { timeoutMs: 30_000 });
  const listening = await waitFor(async () => (await inNetns(pod, ['ss', '-Hltn', 'sport = :8080'])).stdout.includes(':8080'));
  t.ok(listening, 'pod listens on 8080');
  const fetched = await inNetns(host, ['socat', '-u', 'TCP:10.99.0.1:18080,connect-timeout=5', 'STDOUT'], { timeoutMs: 20_000 });
  t.equal(fetched.stdout, 'hello from the pod\n', `hostPort 18080 reaches the pod: ${fetched.stderr}`);
  await listener;

  const gc = await runClient(host, ['gc', '--conflist', conflist, '--cni-path', REFERENCE_PLUGINS, '--valid-attachments', '[]']);
  t.equal(gc.code, 0, 'GC on a 1.0.0 list is skipped, as libcni does');
  t.match(gc.stderr, /gc skipped: cniVersion "1\.0\.0" predates it/);

  const del = await runClient(host, ['del', ...common, '--capability-args', portMappings]);
  t.equal(del.code, 0, `DEL: ${del.stderr}`);
  const links = await run(['ip', '-n', pod.name, '-o', 'link', 'show']);
  t.notMatch(links.stdout, /eth0/, 'eth0 gone from the pod');
  const leases = fs.readdirSync(path.join(dir, 'ipam', 'refnet')).filter((f) => f.startsWith('10.'));
  t.same(leases, [], 'host-local released the address');
  const nat = await inNetns(host, ['iptables-save', '-t', 'nat']);
  t.notMatch(nat.stdout, /18080/, 'portmap removed its DNAT rule');
  const again = await runClient(host, ['del', ...common]);
  t.equal(again.code, 0, 'a second DEL succeeds');
});

t.test('CHECK passes on a healthy pod and reports a broken one', async (t) => {
  const dir = tempDir(t, 'chk');
  const host = await makeNetns(t, 'chkhost');
  const pod = await makeNetns(t, 'chkpod');
  // portmap 1.1.1's CHECK insists on ip6tables chains it never made, so this list is bridge only.
  const conflist = writeConflist(dir, 'refchk', [bridgePlugin(dir, 'cnichk0', '10.98.0.0/24')]);
  const common = ['--conflist', conflist, '--container', 'ctr-chk-1', '--netns', pod.path, '--cni-path', REFERENCE_PLUGINS, '--cache-dir', path.join(dir, 'cache')];
  t.equal((await runClient(host, ['add', ...common])).code, 0, 'ADD');
  const ok = await runClient(host, ['check', ...common]);
  t.equal(ok.code, 0, `CHECK on a healthy pod: ${ok.stderr}`);
  await run(['ip', '-n', pod.name, 'addr', 'flush', 'dev', 'eth0']);
  const broken = await runClient(host, ['check', ...common]);
  t.equal(broken.code, 1, 'CHECK fails once the address is gone');
  t.type(broken.error?.code, 'number', 'error JSON carries a code');
  t.ok(broken.error?.msg, `error JSON carries a message: ${broken.error?.msg}`);
  t.equal((await runClient(host, ['del', ...common])).code, 0, 'DEL');
});

t.test('client errors', async (t) => {
  const dir = tempDir(t, 'err');
  const host = await makeNetns(t, 'errhost');
  const missing = writeConflist(dir, 'nonet', [{ type: 'no-such-plugin' }]);
  const common = ['--conflist', missing, '--container', 'c1', '--netns', host.path, '--cni-path', REFERENCE_PLUGINS, '--cache-dir', path.join(dir, 'cache')];
  const notFound = await runClient(host, ['add', ...common]);
  t.equal(notFound.code, 1);
  t.match(notFound.error, { code: -1, msg: /failed to find plugin "no-such-plugin"/ });

  const badIpam = writeConflist(dir, 'badipam', [{ type: 'bridge', bridge: 'cnibad0', ipam: { type: 'host-local', ranges: [[{ subnet: 'not-a-subnet' }]], dataDir: path.join(dir, 'ipam') } }]);
  const pluginError = await runClient(host, ['add', '--conflist', badIpam, '--container', 'c1', '--netns', host.path, '--cni-path', REFERENCE_PLUGINS, '--cache-dir', path.join(dir, 'cache')]);
  t.equal(pluginError.code, 1);
  t.type(pluginError.error?.code, 'number');
  t.match(pluginError.error?.context, /plugin type="bridge"/, 'the failing plugin is named');

  const usage = await runClient(host, ['add', '--conflist', missing]);
  t.equal(usage.code, 2);
  t.match(usage.error, { code: -1, msg: '--container is required for add' });

  // In the root namespace the client must refuse before running anything
  // (the list names a plugin that does not exist, in case it did not).
  const root = await run([CLIENT, 'add', ...common], { timeoutMs: 30_000 });
  t.equal(root.code, 2, 'refused in the root namespace');
  t.match(root.stderr, /refusing to run/);
});
