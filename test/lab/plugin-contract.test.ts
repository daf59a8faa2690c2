// The CNI contract in the lab: result formats for every spec version, CHECK,
// idempotent ADD/DEL, and bad input answered with the right code while
// changing nothing. Runs once per dataplane mode; bad input is refused before
// the dataplane is touched, so it runs in the first mode only (upstream's
// refused conflists included). The wireserver faults and a missing eth0 are
// test/faults/env-pool and env-host (every fault, with and without a cached
// pool; eth0 missing and down, both modes). Mode transparent's result, CHECK
// and repeated ADD run in the same lab once vm1 has drained.
import t from 'tap';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { MODES, NET_MODES, REPO, VmCni, azureConflist, execPlugin, pluginStdin, vmSnapshot } from './helpers/cni-harness.js';

const upstream = (file: string): Record<string, unknown> =>
  JSON.parse(readFileSync(path.join(REPO, 'test', 'fixtures', 'upstream-conflists', file), 'utf8')) as Record<string, unknown>;

const VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];

for (const mode of MODES) {
  t.test(`CNI contract in ${mode} mode`, async (t) => {
    const spec = defaultSpec(3, 6);
    spec.vms[2]!.secondaryIps = spec.vms[2]!.secondaryIps.slice(0, 2);
    const lab = await Lab.up(spec);
    t.teardown(() => lab.down());
    const vm1 = lab.vmInfo('vm1');

    t.test('every spec version gets a result in its own format', async (t) => {
      for (const v of VERSIONS) {
        // Debian's portmap (plugins 1.1.1) speaks up to 1.0.0, so the 1.1.0 list has azure-vnet alone.
        const cni = new VmCni(lab, 'vm1', azureConflist({ cniVersion: v, dataplane: mode, portmap: v !== '1.1.0' }), `v${v}.conflist`);
        const pod = await cni.addPod(`v${v.replaceAll('.', '')}`);
        t.teardown(() => cni.del(pod).catch(() => {}));
        const r = pod.result as { cniVersion: string; interfaces: { name: string; mac?: string; sandbox?: string }[]; ips: { version?: string; address: string; gateway: string; interface?: number }[]; routes: { dst: string; gw?: string }[] };
        t.equal(r.cniVersion, v, `${v}: cniVersion echoed`);
        t.ok(r.interfaces.every((i) => /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(i.mac ?? '')), `${v}: every interface has a MAC`);
        const ip = r.ips[0]!;
        t.match(ip.address, new RegExp(`^${pod.ip.replaceAll('.', '\\.')}/16$`), `${v}: address with the subnet prefix`);
        t.equal(ip.gateway, '10.240.0.1', `${v}: gateway is the subnet's .1`);
        t.equal(r.interfaces[ip.interface!]?.sandbox, pod.netns, `${v}: ips[].interface points at the sandbox interface`);
        t.equal(ip.version, v.startsWith('0.') ? '4' : undefined, `${v}: ips[].version only before 1.0.0`);
        t.same(r.routes, [{ dst: '0.0.0.0/0', gw: '10.240.0.1' }], `${v}: default route via the gateway`);
        await cni.del(pod);
      }
    });

    t.test('CHECK passes on a healthy pod and detects a deleted pod veth', async (t) => {
      const cni = new VmCni(lab, 'vm1', azureConflist({ cniVersion: '1.0.0', dataplane: mode }), 'check.conflist');
      const pod = await cni.addPod('chk');
      t.equal((await cni.check(pod)).code, 0, 'CHECK ok');
      const del = await lab.execNs(pod.netns, ['ip', 'link', 'del', 'eth0']);
      t.equal(del.code, 0, 'pod veth deleted behind the plugin');
      const res = await cni.check(pod);
      t.not(res.code, 0, 'CHECK fails');
      t.match(res.stderr, /eth0/, 'and names the missing interface');
      await cni.del(pod);
    });

    t.test('a repeated ADD returns the same IP and takes no second one', async (t) => {
      const cni = new VmCni(lab, 'vm1', azureConflist({ dataplane: mode }));
      const first = await cni.addPod('again');
      const second = await cni.add('again', first.netns, first.containerId);
      t.equal(second.ip, first.ip, 'same IP');
      const held = Object.values(cni.state().endpoints).filter((e) => e.ip === first.ip);
      t.equal(held.length, 1, 'one endpoint record');
      await cni.del(first);
      await cni.del(first);
      t.pass('DEL twice succeeds');
      const gone = await cni.addPod('gone');
      await lab.removePodNetns(gone.netns);
      await cni.del(gone);
      t.pass('DEL succeeds when the netns is already gone');
      const mine = Object.values(cni.state().endpoints).filter((e) => [first.ip, gone.ip].includes(e.ip));
      t.same(mine, [], 'no endpoint left for these pods');
      const links = await lab.execVm('vm1', ['ip', '-o', 'link', 'show', 'type', 'veth']);
      const { hostVethName } = await import('../../control/netlink/veth.js');
      t.notMatch(links.stdout, hostVethName(first.containerId, 'eth0'), 'no host veth left for the repeated pod');
      t.notMatch(links.stdout, hostVethName(gone.containerId, 'eth0'), 'no host veth left for the pod whose netns vanished');
    });

    if (mode === MODES[0]) t.test('bad input: the right error code and nothing changed', async (t) => {
      const conflist = azureConflist({ cniVersion: '1.0.0', dataplane: mode });
      const stdin = pluginStdin(conflist);
      const netns = await lab.addPodNetns('vm1', 'bad');
      const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'bad-input-1', CNI_NETNS: netns, CNI_IFNAME: 'eth0' };
      const cases: { name: string; env?: Record<string, string>; stdin?: string; code: number; msg: RegExp }[] = [
        { name: 'empty config', stdin: '', code: 6, msg: /./ },
        { name: 'malformed config', stdin: '{"cniVersion":', code: 6, msg: /./ },
        { name: 'unknown cniVersion', stdin: pluginStdin({ ...conflist, cniVersion: '9.9.9' }), code: 1, msg: /9\.9\.9/ },
        { name: 'missing netns', env: { ...env, CNI_NETNS: '' }, code: 4, msg: /CNI_NETNS/ },
        { name: 'netns that does not exist', env: { ...env, CNI_NETNS: '/run/netns/does-not-exist' }, code: 4, msg: /does-not-exist/ },
        { name: 'ifname too long', env: { ...env, CNI_IFNAME: 'eth0123456789abc' }, code: 4, msg: /CNI_IFNAME/ },
        { name: 'ifname with a slash', env: { ...env, CNI_IFNAME: 'eth/0' }, code: 4, msg: /CNI_IFNAME/ },
        { name: 'container ID with path characters', env: { ...env, CNI_CONTAINERID: '../../etc/passwd' }, code: 4, msg: /CNI_CONTAINERID/ },
        { name: 'unknown ipam environment', stdin: pluginStdin(azureConflist({ dataplane: mode, ipam: { environment: 'nope' } })), code: 7, msg: /environment/ },
        // Upstream's shipped conflists that select behaviour vnet-cni does not have (test/fixtures/upstream-conflists).
        { name: 'upstream multitenancy conflist', stdin: pluginStdin(upstream('azure-linux-multitenancy.conflist')), code: 7, msg: /^multiTenancy true is not supported by vnet-cni/ },
        { name: 'upstream transparent-vlan conflist', stdin: pluginStdin(upstream('azure-linux-multitenancy-transparent-vlan.conflist')), code: 7, msg: /^mode 'transparent-vlan' is not supported .*"bridge" or "transparent"/ },
        { name: 'upstream swift overlay conflist', stdin: pluginStdin(upstream('azure-linux-swift-overlay-consolidated.conflist')), code: 7, msg: /^executionMode 'v4swift' is not supported/ },
      ];
      for (const c of cases) {
        const before = await vmSnapshot(lab, 'vm1');
        const res = await execPlugin(lab, 'vm1', c.env ?? env, c.stdin ?? stdin);
        t.not(res.code, 0, `${c.name}: non-zero exit`);
        t.equal(res.json?.code, c.code, `${c.name}: CNI code ${c.code} (${String(res.json?.msg)})`);
        t.match(String(res.json?.msg), c.msg, `${c.name}: the message says what to fix`);
        t.same(await vmSnapshot(lab, 'vm1'), before, `${c.name}: nothing changed`);
      }
    });

    if (NET_MODES.includes('transparent')) {
      t.test('mode transparent: result, CHECK of the routed shape, repeated ADD', async (t) => {
        const cni = new VmCni(lab, 'vm1', azureConflist({ cniVersion: '1.0.0', dataplane: mode, mode: 'transparent' }), 'transparent.conflist');
        const pod = await cni.addPod('tr');
        const r = pod.result as { ips: { address: string; gateway: string }[]; routes: { dst: string; gw?: string }[] };
        t.match(r.ips[0]!.address, new RegExp(`^${pod.ip.replaceAll('.', '\\.')}/16$`), 'address with the subnet prefix, as upstream');
        t.equal(r.ips[0]!.gateway, '169.254.1.1', 'gateway 169.254.1.1');
        t.same(r.routes, [{ dst: '0.0.0.0/0', gw: '169.254.1.1' }], 'default route via 169.254.1.1');
        t.equal((await cni.check(pod)).code, 0, 'CHECK ok');
        const again = await cni.add('tr', pod.netns, pod.containerId);
        t.equal(again.ip, pod.ip, 'a repeated ADD returns the same IP');
        t.equal((await lab.execNs(pod.netns, ['ip', 'neigh', 'del', '169.254.1.1', 'dev', 'eth0'])).code, 0, 'static neighbour removed behind the plugin');
        const res = await cni.check(pod);
        t.not(res.code, 0, 'CHECK fails');
        t.match(res.stderr, /169\.254\.1\.1/, 'and names the missing neighbour');
        const fixed = await cni.add('tr', pod.netns, pod.containerId);
        t.equal(fixed.ip, pod.ip, 'a repeated ADD rebuilds it with the same IP');
        t.equal((await cni.check(pod)).code, 0, 'CHECK ok again');
        await cni.del(pod);
        t.same(Object.keys(cni.state().endpoints), [], 'drained');
      });
    }

    t.test('a full pool is a clear error that takes nothing', async (t) => {
      const cni = new VmCni(lab, 'vm3', azureConflist({ cniVersion: '1.0.0', dataplane: mode }));
      const p1 = await cni.addPod('f1');
      const p2 = await cni.addPod('f2');
      const netns = await lab.addPodNetns('vm3', 'f3');
      const before = await vmSnapshot(lab, 'vm3');
      const res = await execPlugin(lab, 'vm3', { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'f3', CNI_NETNS: netns, CNI_IFNAME: 'eth0' }, pluginStdin(azureConflist({ cniVersion: '1.0.0', dataplane: mode })));
      t.equal(res.json?.code, 100, `code 100 (${String(res.json?.msg)})`);
      t.match(String(res.json?.msg), /pool/i, 'message explains the pool is exhausted');
      t.same(await vmSnapshot(lab, 'vm3'), before, 'nothing changed');
      await cni.del(p1);
      await cni.del(p2);
    });

    void vm1;
  });
}
