// The pool follows the NIC's ipconfigs while pods run: an added secondary IP
// becomes allocatable, an IP that leaves while in use is reported and never
// handed out again; and the installer puts working binaries and the default
// conflist where a runtime looks for them. Runs once per dataplane mode.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import path from 'node:path';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { run } from '../../control/exec.js';
import { MODES, REPO, VmCni, azureConflist, execPlugin, pluginStdin } from './helpers/cni-harness.js';

for (const mode of MODES) {
  t.test(`pool changes and install in ${mode} mode`, async (t) => {
    const spec = defaultSpec(1, 2);
    const lab = await Lab.up(spec);
    t.teardown(() => lab.down());
    const cni = new VmCni(lab, 'vm1', azureConflist({ cniVersion: '1.0.0', dataplane: mode }));
    const [ip1, ip2] = lab.vmInfo('vm1').secondaryIps as [string, string];

    t.test('a secondary IP added to the NIC becomes allocatable', async (t) => {
      const a = await cni.addPod('p1');
      const b = await cni.addPod('p2');
      t.same([a.ip, b.ip].sort(), [ip1, ip2].sort(), 'both pool IPs in use');
      await t.rejects(cni.addPod('p3'), /pool|exhausted/i, 'the pool is full');
      await lab.addSecondaryIp('vm1', '10.240.1.100');
      const c = await cni.addPod('p4');
      t.equal(c.ip, '10.240.1.100', 'the new ipconfig is used once the NIC has it');
      await cni.del(c);
      await lab.removeSecondaryIp('vm1', '10.240.1.100');

      t.test('an IP that leaves the NIC while in use is reported, not reused', async (t) => {
        await lab.removeSecondaryIp('vm1', a.ip);
        const status = await execPlugin(lab, 'vm1', { CNI_COMMAND: 'STATUS' }, pluginStdin(azureConflist({ cniVersion: '1.1.0', dataplane: mode, portmap: false })));
        t.ok(status.code === 0 || status.json?.code === 50, `STATUS refreshed the pool (${status.stdout.trim() || 'ok'})`);
        t.match(cni.log(), new RegExp(`"ip":"${a.ip.replaceAll('.', '\\.')}".*left the NIC`), 'the orphaned address is logged');
        await cni.del(a);
        const d = await cni.addPod('p5').catch((err: Error) => err);
        t.ok(d instanceof Error || d.ip !== a.ip, 'the orphaned address is not handed out again');
        if (!(d instanceof Error)) await cni.del(d);
        await cni.del(b);
      });
    });

    t.test('install-cni-plugin.sh installs working binaries and the default conflist', async (t) => {
      const dir = mkdtempSync('/tmp/vnet-cni-install-');
      t.teardown(() => rmSync(dir, { recursive: true, force: true }));
      const binDir = path.join(dir, 'bin');
      const confDir = path.join(dir, 'net.d');
      const res = await run([path.join(REPO, 'docker', 'install-cni-plugin.sh'), '--bin-dir', binDir, '--conf-dir', confDir, '--app-dir', path.join(dir, 'app')], { timeoutMs: 120_000 });
      t.equal(res.code, 0, `installer ran: ${res.stderr.trim()}`);
      for (const b of ['azure-vnet', 'azure-vnet-ipam', 'vnetctl']) t.ok(existsSync(path.join(binDir, b)), `${b} installed`);
      const conflist = JSON.parse(readFileSync(path.join(confDir, '10-azure.conflist'), 'utf8')) as { plugins: { type: string }[] };
      t.same(conflist.plugins.map((p) => p.type), ['azure-vnet', 'portmap'], 'the default conflist is the original seed');
      await lab.addSecondaryIp('vm1', '10.240.1.101');
      const netns = await lab.addPodNetns('vm1', 'inst');
      const installed = await lab.execVm('vm1', [path.join(binDir, 'azure-vnet')], {
        env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'installed', CNI_NETNS: netns, CNI_IFNAME: 'eth0', CNI_PATH: `${binDir}:/usr/lib/cni` },
        input: pluginStdin(azureConflist({ cniVersion: '1.0.0', dataplane: mode })),
      });
      t.equal(installed.code, 0, `the installed azure-vnet ADDs a pod: ${installed.stdout.slice(0, 300)}`);
      const del = await lab.execVm('vm1', [path.join(binDir, 'azure-vnet')], {
        env: { CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'installed', CNI_NETNS: netns, CNI_IFNAME: 'eth0', CNI_PATH: `${binDir}:/usr/lib/cni` },
        input: pluginStdin(azureConflist({ cniVersion: '1.0.0', dataplane: mode })),
      });
      t.equal(del.code, 0, 'and DELs it');
    });
  });
}
