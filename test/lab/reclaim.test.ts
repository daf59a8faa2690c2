// Pods that die without a DEL (control/agent/reclaim.ts): when the pool runs
// short the plugin releases the endpoints whose netns is gone, or whose path
// now names another netns, and keeps every live pod's IP, including ones
// whose path disappeared or was re-mounted while another process holds their
// netns. The daemon does the same on its timer.
import t from 'tap';
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { ping } from '../../lab/tools/net.js';
import { startChild, stopChild, waitForLine, pollUntil } from '../../lab/children.js';
import { vmExecArgv } from '../../lab/vm-exec.js';
import { runOk } from '../../control/exec.js';
import { CniRunFailed, MODES, REPO, VmCni, azureConflist, type PodHandle } from './helpers/cni-harness.js';

const SOCKET = '/run/vnet-cni/daemon.sock';

for (const mode of MODES) {
  t.test(`reclaiming dead pods' IPs, ${mode} mode`, async (t) => {
    const lab = await Lab.up(defaultSpec(2, 5));
    t.teardown(() => lab.down());
    const holders: ChildProcess[] = [];
    t.teardown(async () => {
      for (const h of holders) await stopChild(h, 500);
    });
    /** A process alone in a new netns (a container's init): its netns is /proc/PID/ns/net and dies with it. */
    const hold = async (argv: string[]): Promise<ChildProcess> => {
      const child = startChild([...argv, 'sh', '-c', 'echo up; exec sleep 600']);
      holders.push(child);
      await waitForLine(child, /^up$/, 10_000, argv.join(' '));
      return child;
    };
    const vm1 = new VmCni(lab, 'vm1', azureConflist({ dataplane: mode, portmap: false }));
    const vethGone = (pod: PodHandle) => {
      const veth = vm1.state().endpoints[`${pod.containerId}/eth0`]!.hostVeth;
      return pollUntil(async () => ((await lab.execVm('vm1', ['ip', 'link', 'show', veth])).code !== 0 ? true : undefined), 30_000, 50, `${veth} gone with its netns`);
    };

    // Five pods fill vm1's pool of five.
    const procA = await hold(['unshare', '--net']);
    const a = await vm1.add('a', `/proc/${procA.pid}/ns/net`, 'c-a');
    const b = await vm1.addPod('b');
    const c = await vm1.addPod('c');
    const d = await vm1.addPod('d');
    const h = await vm1.addPod('h');
    const spare = await lab.addPodNetns('vm1', 'spare');

    // a: its process dies (docker rm -f), so /proc/PID/ns/net is gone.
    await stopChild(procA, 500);
    await vethGone(a);
    // b: its bind mount is removed and the path re-mounted over another live netns (a reused name).
    await runOk(['ip', 'netns', 'del', path.basename(b.netns)]);
    await vethGone(b);
    writeFileSync(b.netns, '');
    await runOk(['mount', '--bind', spare, b.netns]);
    // c: its path is removed, but a process still holds the netns: a live pod.
    const holdC = await hold(['nsenter', `--net=${c.netns}`]);
    await runOk(['ip', 'netns', 'del', path.basename(c.netns)]);
    // h: a process holds its netns and its path is re-mounted over another netns: a live pod.
    const holdH = await hold(['nsenter', `--net=${h.netns}`]);
    await runOk(['ip', 'netns', 'del', path.basename(h.netns)]);
    writeFileSync(h.netns, '');
    await runOk(['mount', '--bind', spare, h.netns]);

    const e = await vm1.addPod('e');
    const f = await vm1.addPod('f');
    t.same([e.ip, f.ip].sort(), [a.ip, b.ip].sort(), 'the next two ADDs get the dead pods\' IPs');
    const g = await vm1.addPod('g').then(() => 'succeeded', (err: unknown) => (err instanceof CniRunFailed ? err.cniError : String(err)));
    t.match(g, { code: 100, msg: /no free address/ }, 'then the pool is really full: c, d and h keep theirs');
    const held = Object.values(vm1.state().endpoints).map((ep) => ep.ip).sort();
    t.same(held, [c.ip, d.ip, e.ip, f.ip, h.ip].sort(), 'the store holds exactly the five live pods');
    t.match(vm1.log(), /now names another netns.*"msg":"reclaiming the endpoint of a pod that died without a DEL"/, 'the log says why b was reclaimed');
    t.ok(await ping(lab.vmNetns('vm1'), c.ip), 'c (path gone, netns held) is still reachable');
    t.ok(await ping(lab.vmNetns('vm1'), d.ip), 'd is still reachable');
    t.ok(await ping(lab.vmNetns('vm1'), e.ip), 'e, on a reclaimed IP, is reachable');
    t.ok(await ping(lab.vmNetns('vm1'), h.ip), 'h (path re-mounted elsewhere, netns held) is still reachable');
    await stopChild(holdC, 500);
    await stopChild(holdH, 500);

    await t.test('the daemon reclaims on its timer', async (t) => {
      const daemon = startChild(vmExecArgv(lab.names, 'vm2', [process.execPath, path.join(REPO, 'dist', 'control', 'cli', 'vnetctl.js'), 'daemon', '--socket', SOCKET, '--reclaim-seconds', '1']));
      t.teardown(() => stopChild(daemon));
      await waitForLine(daemon, /^READY /, 20_000, 'vnetctl daemon');
      const vm2 = new VmCni(lab, 'vm2', azureConflist({ dataplane: mode, portmap: false, extra: { daemonSocket: SOCKET } }));
      const proc = await hold(['unshare', '--net']);
      const dead = await vm2.add('dead', `/proc/${proc.pid}/ns/net`, 'c-dead');
      const live = await vm2.addPod('live');
      await stopChild(proc, 500);
      await pollUntil(() => (vm2.state().endpoints['c-dead/eth0'] ? undefined : true), 30_000, 200, 'the dead pod reclaimed by the daemon');
      t.same(Object.values(vm2.state().endpoints).map((ep) => ep.ip), [live.ip], 'only the live pod is left');
      t.not(dead.ip, live.ip);
      t.ok(await ping(lab.vmNetns('vm2'), live.ip), 'the live pod is reachable');
    });
  });
}
