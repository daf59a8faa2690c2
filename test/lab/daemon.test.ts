// The node daemon in a lab VM: the plugin forwards to it when its socket is
// configured and alive, results match standalone mode, a dead daemon means
// standalone mode, and its socket is root-only and robust to bad input.
// kill -9 of the daemon mid-storm is test/faults/daemon-storm-kill (ADD and
// DEL storms, no duplicate IP, reachability, GC leaves nothing) and, in both
// dataplanes on every run, test/faults/kill-random (daemon killed mid-call).
import t from 'tap';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { ping } from '../../lab/tools/net.js';
import { startChild, stopChild, waitForLine } from '../../lab/children.js';
import { vmExecArgv } from '../../lab/vm-exec.js';
import { MODES, REPO, VmCni, azureConflist, type PodHandle } from './helpers/cni-harness.js';

const SOCKET = '/run/vnet-cni/daemon.sock';

/** A result with what must differ between two VMs (random MACs, the VM's pool IP, the pod netns path) masked. */
function normalise(pod: PodHandle): string {
  return JSON.stringify(pod.result).replaceAll(/"mac":"[0-9a-f:]{17}"/g, '"mac":"MAC"').replaceAll(pod.ip, 'IP').replaceAll(pod.netns, 'NETNS');
}

for (const mode of MODES) {
  t.test(`node daemon in ${mode} mode`, async (t) => {
    const lab = await Lab.up(defaultSpec(2, 60));
    t.teardown(() => lab.down());
    let daemon: ChildProcess | undefined;
    const startDaemon = async (vm: string): Promise<ChildProcess> => {
      const child = startChild(vmExecArgv(lab.names, vm, [process.execPath, path.join(REPO, 'dist', 'control', 'cli', 'vnetctl.js'), 'daemon', '--socket', SOCKET]));
      await waitForLine(child, /^READY /, 120_000, 'vnetctl daemon');
      return child;
    };
    t.teardown(async () => {
      if (daemon) await stopChild(daemon);
    });
    daemon = await startDaemon('vm1');
    const viaDaemon = new VmCni(lab, 'vm1', azureConflist({ cniVersion: '1.0.0', dataplane: mode, extra: { daemonSocket: SOCKET } }));
    const standalone = new VmCni(lab, 'vm2', azureConflist({ cniVersion: '1.0.0', dataplane: mode }));

    t.test('calls go through the daemon and give the same results as standalone', async (t) => {
      const d = await viaDaemon.addPod('same', { containerId: 'same-container' });
      const s = await standalone.addPod('same', { containerId: 'same-container' });
      t.equal(normalise(d), normalise(s), 'identical CNI results (MACs and the VM-specific IP aside)');
      const log = await lab.execVm('vm1', ['sh', '-c', 'cat /var/log/vnet-cni-daemon.log']);
      t.match(log.stdout, /"containerId":"same-container".*endpoint added/, 'the daemon did the work');
      t.ok(await ping(lab.vmNetns('vm1'), d.ip), 'the pod is reachable');
      await viaDaemon.del(d);
      await standalone.del(s);
    });

    t.test('the socket is root-only and survives garbage', async (t) => {
      const mode_ = await lab.execVm('vm1', ['stat', '-c', '%a %U', SOCKET]);
      t.equal(mode_.stdout.trim(), '600 root', 'socket mode 0600, owned by root');
      const asNobody = await lab.execVm('vm1', ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e',
        `require('net').createConnection(${JSON.stringify(SOCKET)}).on('connect',()=>{console.log('connected');process.exit(0)}).on('error',e=>{console.log(e.code);process.exit(1)})`]);
      t.equal(asNobody.stdout.trim(), 'EACCES', 'a non-root client is refused');
      const garbage = await lab.execVm('vm1', [process.execPath, '-e', `
        const s = require('net').createConnection(${JSON.stringify(SOCKET)});
        s.on('connect', () => { const b = Buffer.from([0,0,0,8, 0xff,0xff,0xff,0xff,0xff,0xff,0xff,0xff]); s.write(b); });
        let got = Buffer.alloc(0); s.on('data', (d) => { got = Buffer.concat([got, d]); });
        s.on('close', () => { console.log(got.length > 4 ? 'answered' : 'closed'); });
        setTimeout(() => { console.log('timeout'); process.exit(1); }, 5000).unref();`]);
      t.equal(garbage.stdout.trim(), 'answered', 'invalid protobuf gets an error answer');
      const after = await viaDaemon.addPod('after-garbage');
      t.ok(after.ip, 'the daemon still serves ADDs');
      await viaDaemon.del(after);
    });

    t.test('a dead daemon means standalone mode, not failure', async (t) => {
      await stopChild(daemon!);
      daemon = undefined;
      const p = await viaDaemon.addPod('nodaemon');
      t.ok(p.ip, 'ADD works with the daemon down');
      await viaDaemon.del(p);
    });
  });
}
