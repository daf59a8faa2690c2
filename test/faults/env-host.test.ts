// Environment faults on the VM itself, through the real plugin, in both
// dataplane modes:
// - the pod netns deleted in the middle of ADD (a test pause point stops the
//   plugin after the veth, or after the pod side is configured): code 4,
//   rolled back (no host veth, no record, no IP held, kernel and store agree);
//   the netns deleted before DEL: DEL succeeds and leaves nothing.
// - eth0 missing: code 101 naming it; eth0 down: ADD code 101 "is down",
//   STATUS code 50, both fine again once it is up. Nothing changed meanwhile.
// - bpffs not mounted (ebpf mode, unmounted in the VM's mount namespace): ADD
//   and DEL answer code 101 saying to mount it, nothing changed; with bpffs
//   back (the pins were never lost) both succeed.
import t from 'tap';
import path from 'node:path';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { pollUntil, startChild, stopChild, waitForLine } from '../../lab/children.js';
import { vmExecArgv } from '../../lab/vm-exec.js';
import { hostVethName } from '../../control/netlink/veth.js';
import { FAULTY_DAEMON, MODES, REPO, VmCni, azureConflist, execFaultyPlugin, execPlugin, pluginStdin, vmSnapshot } from '../lab/helpers/cni-harness.js';
import { FaultTally } from './helpers/report.js';
import { FULL, scaled } from './helpers/scale.js';
import { VmMountNs, nsSnapshot } from './helpers/vm-mountns.js';

const TRIES = scaled(1, 4);
const VNETCTL = path.join(REPO, 'dist', 'control', 'cli', 'vnetctl.js');
const SOCKET = '/run/vnet-cni/daemon.sock';
const tally = new FaultTally('env-host');

interface State {
  endpoints: Record<string, { ip: string }>;
  ipam: { holdings: Record<string, { ip: string; orphaned?: boolean }> };
}

function readState(lab: Lab, vm: string): State {
  try {
    return JSON.parse(readFileSync(path.join(lab.vmPaths(vm).varLib, 'state.json'), 'utf8')) as State;
  } catch {
    return { endpoints: {}, ipam: { holdings: {} } };
  }
}

/** `vnetctl debug endpoints`: every disagreement between the kernel (map / ebtables / veths) and the store. */
async function endpointIssues(lab: Lab, vm: string): Promise<string[]> {
  const res = await lab.execVm(vm, [process.execPath, VNETCTL, 'debug', 'endpoints', '--json']);
  if (res.code !== 0) return [`debug endpoints failed: ${res.stderr.trim()}`];
  const view = JSON.parse(res.stdout) as { rows?: { ip: string; issues: { kind: string }[] }[] };
  return (view.rows ?? []).flatMap((r) => r.issues.map((i) => `${r.ip}: ${i.kind}`));
}

for (const mode of MODES) {
  t.test(`host faults in ${mode} mode`, async (t) => {
    const lab = await Lab.up(defaultSpec(3, 8));
    t.teardown(() => lab.down());
    const conflist = azureConflist({ cniVersion: '1.0.0', dataplane: mode });
    const stdin = pluginStdin(conflist);

    t.test('pod netns deleted in the middle of ADD', async (t) => {
      const vm = 'vm1';
      const cni = new VmCni(lab, vm, conflist);
      const other = await cni.addPod('bystander'); // so the node stays set up and we see only the pod's own leftovers
      const run = lab.vmPaths(vm).run;
      // Bounded form: one pause point per mode (each mode a different one); full form: both in both.
      const points = FULL ? ['add:after-veth', 'add:after-pod-config'] : [mode === 'iptables' ? 'add:after-veth' : 'add:after-pod-config'];
      for (const point of points) {
        for (let i = 0; i < TRIES; i++) {
          const netns = await lab.addPodNetns(vm, `gone${point.length}${i}`);
          const cid = `gone-${point.replace(':', '-')}-${i}`;
          const pause = `pause-${cid}`;
          rmSync(path.join(run, pause), { force: true });
          rmSync(path.join(run, `${pause}.reached`), { force: true });
          const before = await vmSnapshot(lab, vm);
          const env = {
            CNI_COMMAND: 'ADD', CNI_CONTAINERID: cid, CNI_NETNS: netns, CNI_IFNAME: 'eth0',
            VNET_CNI_TEST_PAUSE_AT: point, VNET_CNI_TEST_PAUSE_FILE: `/run/vnet-cni/${pause}`,
          };
          const adding = execFaultyPlugin(lab, vm, env, stdin);
          await pollUntil(() => (existsSync(path.join(run, `${pause}.reached`)) ? true : undefined), 60_000, 50, `ADD reaching ${point}`);
          await lab.removePodNetns(netns);
          writeFileSync(path.join(run, pause), 'go');
          const res = await adding;
          const ok = res.code !== 0 && res.json?.code === 4 && /disappeared/.test(String(res.json?.msg));
          t.ok(ok, `${point}: ADD fails with code 4 (${String(res.json?.code)}: ${String(res.json?.msg)})`);
          const links = await lab.execVm(vm, ['ip', '-o', 'link', 'show']);
          const noVeth = !links.stdout.includes(hostVethName(cid, 'eth0'));
          t.ok(noVeth, `${point}: no host veth left`);
          const st = readState(lab, vm);
          const noRecord = !st.endpoints[`${cid}/eth0`] && !st.ipam.holdings[`${cid}/eth0`];
          t.ok(noRecord, `${point}: no endpoint record and no IP held`);
          const after = await vmSnapshot(lab, vm);
          t.equal(after.links, before.links, `${point}: the VM's links are as before`);
          t.equal(after.rules, before.rules, `${point}: rule counts are as before`);
          const issues = await endpointIssues(lab, vm);
          t.same(issues, [], `${point}: kernel (${mode === 'ebpf' ? 'endpoint map' : 'ebtables'}) and store agree`);
          tally.add(`pod netns deleted during ADD (${mode})`, point, ok && noVeth && noRecord && issues.length === 0 ? 'code 4, rolled back: no veth, no IP, no rule or map entry' : 'WRONG');
          rmSync(path.join(run, pause), { force: true });
          rmSync(path.join(run, `${pause}.reached`), { force: true });
        }
      }
      for (let i = 0; i < TRIES; i++) {
        const pod = await cni.addPod(`predel${i}`);
        await lab.removePodNetns(pod.netns);
        const res = await execPlugin(lab, vm, { CNI_COMMAND: 'DEL', CNI_CONTAINERID: pod.containerId, CNI_NETNS: pod.netns, CNI_IFNAME: 'eth0' }, stdin);
        t.equal(res.code, 0, `DEL with the netns already gone succeeds ${res.stdout}`);
        const st = readState(lab, vm);
        const clean = !st.endpoints[`${pod.containerId}/eth0`] && !st.ipam.holdings[`${pod.containerId}/eth0`];
        t.ok(clean, 'no record, IP released');
        const issues = await endpointIssues(lab, vm);
        t.same(issues, [], 'kernel and store agree');
        tally.add(`pod netns deleted before DEL (${mode})`, 'DEL', res.code === 0 && clean && issues.length === 0 ? 'succeeds, nothing left' : 'WRONG');
      }
      await cni.del(other);
    });

    if (mode === MODES[0]) {
      t.test('pod netns deleted in the middle of ADD, through the daemon', async (t) => {
        const vm = 'vm1';
        const run = lab.vmPaths(vm).run;
        const pause = 'pause-daemon';
        const point = 'add:after-veth';
        rmSync(path.join(run, pause), { force: true });
        rmSync(path.join(run, `${pause}.reached`), { force: true });
        // The test-only daemon entry (test/support/faulty-daemon.ts) honours the pause point; `vnetctl daemon` does not.
        const daemon = startChild(vmExecArgv(lab.names, vm, [process.execPath, FAULTY_DAEMON, '--socket', SOCKET]), {
          env: { ...process.env, VNET_CNI_TEST_PAUSE_AT: point, VNET_CNI_TEST_PAUSE_FILE: `/run/vnet-cni/${pause}` },
        });
        t.teardown(() => stopChild(daemon));
        await waitForLine(daemon, /^READY /, 30_000, 'vnetctl daemon');
        const viaDaemon = pluginStdin(azureConflist({ cniVersion: '1.0.0', dataplane: mode, extra: { daemonSocket: SOCKET } }));
        for (let i = 0; i < TRIES; i++) {
          rmSync(path.join(run, pause), { force: true });
          rmSync(path.join(run, `${pause}.reached`), { force: true });
          const netns = await lab.addPodNetns(vm, `dgone${i}`);
          const cid = `dgone-${i}`;
          const adding = execPlugin(lab, vm, { CNI_COMMAND: 'ADD', CNI_CONTAINERID: cid, CNI_NETNS: netns, CNI_IFNAME: 'eth0' }, viaDaemon);
          await pollUntil(() => (existsSync(path.join(run, `${pause}.reached`)) ? true : undefined), 60_000, 50, `daemon ADD reaching ${point}`);
          await lab.removePodNetns(netns);
          writeFileSync(path.join(run, pause), 'go');
          const res = await adding;
          const ok = res.json?.code === 4 && /disappeared/.test(String(res.json?.msg));
          t.ok(ok, `daemon: ADD fails with code 4 (${String(res.json?.code)}: ${String(res.json?.msg)})`);
          const links = await lab.execVm(vm, ['ip', '-o', 'link', 'show']);
          const st = readState(lab, vm);
          const clean = !links.stdout.includes(hostVethName(cid, 'eth0')) && !st.endpoints[`${cid}/eth0`] && !st.ipam.holdings[`${cid}/eth0`];
          t.ok(clean, 'daemon: no veth, no record, no IP held');
          const issues = await endpointIssues(lab, vm);
          t.same(issues, [], 'daemon: kernel and store agree');
          tally.add(`pod netns deleted during ADD (${mode}, daemon)`, point, ok && clean && issues.length === 0 ? 'code 4, rolled back: no veth, no IP, no rule or map entry' : 'WRONG');
        }
        const log = await lab.execVm(vm, ['sh', '-c', 'cat /var/log/vnet-cni-daemon.log']);
        t.match(log.stdout, /disappeared during ADD|ADD failed; rolling back/, 'the daemon did the work');
      });
    }

    t.test('eth0 missing or down', async (t) => {
      const vm = 'vm2';
      const statusList = azureConflist({ cniVersion: '1.1.0', dataplane: mode, portmap: false });
      const status = (): Promise<{ code: number; json?: Record<string, unknown> }> => execPlugin(lab, vm, { CNI_COMMAND: 'STATUS' }, pluginStdin(statusList));
      // Taking a link down drops its routes; a real VM's DHCP client puts the default route back, here we do.
      const defaultRoute = (await lab.execVm(vm, ['ip', 'route', 'show', 'default'])).stdout.trim();
      t.match(defaultRoute, /^default via/, 'the VM has a default route to restore');
      for (let i = 0; i < TRIES; i++) {
        const netns = await lab.addPodNetns(vm, `nic${i}`);
        const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: `nic-${i}`, CNI_NETNS: netns, CNI_IFNAME: 'eth0' };

        const renamed = await lab.execVm(vm, ['sh', '-c', 'ip link set eth0 down && ip link set eth0 name eth7']);
        t.equal(renamed.code, 0, 'eth0 renamed away');
        let before = await vmSnapshot(lab, vm);
        const missing = await execPlugin(lab, vm, env, stdin);
        const missingOk = missing.json?.code === 101 && /eth0 not found/.test(String(missing.json?.msg));
        t.ok(missingOk, `missing: code 101 naming eth0 (${String(missing.json?.msg)})`);
        t.same(await vmSnapshot(lab, vm), before, 'missing: nothing changed');
        const st1 = await status();
        t.equal(st1.json?.code, 50, `missing: STATUS not available (${String(st1.json?.msg)})`);
        tally.add(`eth0 (${mode})`, 'missing', missingOk && st1.json?.code === 50 ? 'ADD code 101 naming eth0, STATUS 50, nothing changed' : 'WRONG');

        const back = await lab.execVm(vm, ['sh', '-c', 'ip link set eth7 name eth0']);
        t.equal(back.code, 0, 'eth0 back, still down');
        before = await vmSnapshot(lab, vm);
        const down = await execPlugin(lab, vm, env, stdin);
        const downOk = down.json?.code === 101 && /eth0 is down/.test(String(down.json?.msg));
        t.ok(downOk, `down: code 101 "is down" (${String(down.json?.msg)})`);
        t.same(await vmSnapshot(lab, vm), before, 'down: nothing changed');
        const st2 = await status();
        t.equal(st2.json?.code, 50, `down: STATUS not available (${String(st2.json?.msg)})`);
        t.match(String(st2.json?.msg), /down/, 'down: STATUS says why');
        tally.add(`eth0 (${mode})`, 'down', downOk && st2.json?.code === 50 ? 'ADD code 101 "is down", STATUS 50, nothing changed' : 'WRONG');

        const up = await lab.execVm(vm, ['sh', '-c', `ip link set eth0 up && ip route replace ${defaultRoute.split('\n')[0]}`]);
        t.equal(up.code, 0, 'eth0 up');
        const st3 = await status();
        t.equal(st3.code, 0, `up: STATUS ready ${String(st3.json?.msg)}`);
        const ok = await execPlugin(lab, vm, env, stdin);
        t.equal(ok.code, 0, `up: ADD succeeds (${String(ok.json?.msg)})`);
        const del = await execPlugin(lab, vm, { ...env, CNI_COMMAND: 'DEL' }, stdin);
        t.equal(del.code, 0, 'DEL');
        tally.add(`eth0 (${mode})`, 'recovery after up', st3.code === 0 && ok.code === 0 && del.code === 0 ? 'STATUS ready, ADD and DEL succeed' : 'WRONG');
        await lab.removePodNetns(netns);
      }
    });

    if (mode === 'ebpf') {
      t.test('bpffs not mounted', async (t) => {
        const vm = 'vm3';
        for (const existing of [false, true]) {
          const cni = new VmCni(lab, vm, conflist);
          const keep = existing ? await cni.addPod('bpfkeep') : undefined;
          const ns = await VmMountNs.open(lab, vm, 'umount /sys/fs/bpf');
          try {
            for (let i = 0; i < TRIES; i++) {
              const netns = await lab.addPodNetns(vm, `bpf${existing ? 'e' : 'f'}${i}`);
              const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: `bpf-${existing}-${i}`, CNI_NETNS: netns, CNI_IFNAME: 'eth0' };
              const before = await nsSnapshot(ns);
              const add = await ns.plugin(env, stdin);
              const addOk = add.json?.code === 101 && /bpffs/.test(String(add.json?.msg)) && /mount -t bpf/.test(String(add.json?.msg));
              t.ok(addOk, `ADD: code 101 saying to mount bpffs (${String(add.json?.msg)})`);
              t.same(await nsSnapshot(ns), before, 'ADD: nothing changed');
              const label = existing ? 'node with pods' : 'fresh node';
              tally.add('bpffs not mounted (ebpf)', `ADD, ${label}`, addOk ? 'code 101 "mount bpffs", nothing changed' : 'WRONG');
              if (keep) {
                const del = await ns.plugin({ ...env, CNI_COMMAND: 'DEL', CNI_CONTAINERID: keep.containerId, CNI_NETNS: keep.netns }, stdin);
                const delOk = del.json?.code === 101 && /bpffs/.test(String(del.json?.msg));
                t.ok(delOk, `DEL: code 101 saying to mount bpffs (${String(del.json?.msg)})`);
                const after = await nsSnapshot(ns);
                t.equal(after.links, before.links, 'DEL: the pod stays wired');
                t.ok(readState(lab, vm).endpoints[`${keep.containerId}/eth0`], 'DEL: the record stays for the retry');
                tally.add('bpffs not mounted (ebpf)', 'DEL, node with pods', delOk ? 'code 101 "mount bpffs", pod and map entry kept for the retry' : 'WRONG');
              }
              await lab.removePodNetns(netns);
            }
          } finally {
            await ns.close();
          }
          // bpffs back (the VM's own, with its pins): the same calls succeed.
          const p = await cni.addPod(`bpfok${existing ? 'e' : 'f'}`);
          t.ok(p.ip, 'with bpffs mounted ADD succeeds');
          let checked = true;
          if (keep) {
            checked = (await cni.check(keep)).code === 0;
            t.ok(checked, 'the earlier pod still passes CHECK');
            await cni.del(keep);
          }
          await cni.del(p);
          const issues = await endpointIssues(lab, vm);
          t.same(issues, [], 'kernel and store agree');
          tally.add('bpffs not mounted (ebpf)', 'retry with bpffs mounted', checked && issues.length === 0 ? 'ADD and DEL succeed, earlier pod intact, map and store agree' : 'WRONG');
        }
      });
    }
  });
}

t.teardown(() => tally.flush({ tries: TRIES }));
