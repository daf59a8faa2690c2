// The native CNI shim (dist/shim/azure-vnet, as install-cni-plugin.sh installs
// it) in a lab VM with the node daemon running, driven by the real libcni
// client: every verb goes to the daemon as one INVOKE and gives what the Node
// plugin gives standalone on another VM for the same input, errors included;
// the pod is reachable; with the daemon gone the shim runs the Node plugin.
import t from 'tap';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { ping } from '../../lab/tools/net.js';
import { startChild, stopChild, waitForLine } from '../../lab/children.js';
import { vmExecArgv } from '../../lab/vm-exec.js';
import { existsSync } from 'node:fs';
import { CniRunFailed, MODES, REPO, SHIM_CNI_PATH, SHIM_DIR, VmCni, azureConflist, execPlugin, pluginStdin, type PodHandle } from './helpers/cni-harness.js';

const SOCKET = '/run/vnet-cni/daemon.sock';

/** A result with what must differ between two VMs (random MACs, the VM's pool IP, the pod netns path) masked. */
function normalise(pod: PodHandle): string {
  return JSON.stringify(pod.result).replaceAll(/"mac":"[0-9a-f:]{17}"/g, '"mac":"MAC"').replaceAll(pod.ip, 'IP').replaceAll(pod.netns, 'NETNS');
}

/** What the plugin printed for a failed cniclient call (libcni passes the plugin's error document through). */
async function failure(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
    return 'succeeded';
  } catch (err) {
    return err instanceof CniRunFailed ? err.cniError : String(err);
  }
}

for (const mode of MODES) {
  t.test(`native shim with the node daemon, ${mode} mode`, { skip: existsSync(path.join(SHIM_DIR, 'cni-shim')) ? false : 'shim not built' }, async (t) => {
    const lab = await Lab.up(defaultSpec(2, 60));
    t.teardown(() => lab.down());
    const child = startChild(vmExecArgv(lab.names, 'vm1', [process.execPath, path.join(REPO, 'dist', 'control', 'cli', 'vnetctl.js'), 'daemon', '--socket', SOCKET]));
    let daemon: ChildProcess | undefined = child;
    t.teardown(async () => {
      if (daemon) await stopChild(daemon);
    });
    await waitForLine(child, /^READY /, 60_000, 'vnetctl daemon');
    const daemonLog = async (): Promise<string> => (await lab.execVm('vm1', ['cat', '/var/log/vnet-cni-daemon.log'])).stdout;
    const served = async (): Promise<number> => ((await daemonLog()).match(/"via":"shim"/g) ?? []).length;

    const conf = (extra: Record<string, unknown> = {}, cniVersion = '1.1.0') => azureConflist({ cniVersion, dataplane: mode, portmap: false, extra });
    const shim = new VmCni(lab, 'vm1', conf({ daemonSocket: SOCKET }), '10-azure.conflist', SHIM_CNI_PATH);
    const node = new VmCni(lab, 'vm2', conf());

    let s: PodHandle | undefined;
    let n: PodHandle | undefined;
    await t.test('ADD, CHECK, STATUS, GC, VERSION: same results as the standalone Node plugin', async (t) => {
      const before = await served();
      s = await shim.addPod('same', { containerId: 'same-container' });
      n = await node.addPod('same', { containerId: 'same-container' });
      t.equal(normalise(s), normalise(n), 'identical ADD results (MACs and the VM-specific IP aside)');
      t.match(await daemonLog(), /"containerId":"same-container".*endpoint added/, 'the daemon did the work');
      t.match(await daemonLog(), /"verb":"ADD","via":"shim","containerId":"same-container".*"spawns":\{/, 'its log line tallies the programs the ADD ran (if any)');
      t.ok(await ping(lab.vmNetns('vm1'), s.ip), 'the pod is reachable');
      for (const verb of ['check', 'status'] as const) {
        const flags = (p: PodHandle): string[] => (verb === 'check' ? ['--container', p.containerId, '--netns', p.netns, '--ifname', 'eth0'] : []);
        const a = await shim.client(verb, flags(s));
        const b = await node.client(verb, flags(n));
        t.same([a.code, a.stdout], [b.code, b.stdout], `${verb}: same outcome (exit ${b.code})`);
        t.equal(a.code, 0, `${verb} succeeds ${a.stderr}`);
      }
      const valid = JSON.stringify([{ containerID: 'same-container', ifname: 'eth0' }]);
      const gcA = await shim.client('gc', ['--valid-attachments', valid]);
      const gcB = await node.client('gc', ['--valid-attachments', valid]);
      t.same([gcA.code, gcA.stdout], [gcB.code, gcB.stdout], 'gc: same outcome');
      t.equal(Object.keys(shim.state().endpoints).length, 1, 'GC kept the live pod');
      // VERSION: libcni asks it of the binary directly.
      const stdin = pluginStdin(conf({ daemonSocket: SOCKET }, '1.0.0'));
      const va = await execPlugin(lab, 'vm1', { CNI_COMMAND: 'VERSION' }, stdin, 'azure-vnet', SHIM_DIR);
      const vb = await execPlugin(lab, 'vm2', { CNI_COMMAND: 'VERSION' }, stdin);
      t.same([va.code, va.stdout], [vb.code, vb.stdout], 'VERSION: same answer');
      t.ok((await served()) >= before + 5, 'ADD, CHECK, STATUS, GC and VERSION all went to the daemon through the shim');
    });

    await t.test('errors are the standalone plugin\'s errors', async (t) => {
      const before = await served();
      const cases: [string, Record<string, unknown>, string][] = [
        ['bad config', { mode: 'sideways' }, '1.0.0'],
        ['bad ipam', { ipam: { type: 'azure-vnet-ipam', environment: 'moon' } }, '1.0.0'],
        ['unknown version', {}, '0.9.9'],
      ];
      for (const [what, extra, version] of cases) {
        shim.setConflist(conf({ ...extra, daemonSocket: SOCKET }, version));
        node.setConflist(conf(extra, version));
        const a = await failure(shim.addPod(`err-${what.replaceAll(' ', '-')}`));
        const b = await failure(node.addPod(`err-${what.replaceAll(' ', '-')}`));
        t.same(a, b, `${what}: ${JSON.stringify(b)}`);
        t.not(a, 'succeeded', `${what}: the ADD fails`);
      }
      t.ok((await served()) > before, 'the daemon judged them');
      shim.setConflist(conf({ daemonSocket: SOCKET }));
      node.setConflist(conf());
    });

    await t.test('DEL, then a dead daemon: the shim runs the Node plugin', async (t) => {
      if (s) await shim.del(s);
      if (n) await node.del(n);
      t.same(Object.keys(shim.state().endpoints), [], 'DEL through the shim removed the endpoint');
      await stopChild(child);
      daemon = undefined;
      const p = await shim.addPod('nodaemon');
      t.ok(await ping(lab.vmNetns('vm1'), p.ip), 'ADD works with the daemon down, pod reachable');
      await shim.del(p);
      t.same(Object.keys(shim.state().endpoints), [], 'and DEL');
    });
  });
}
