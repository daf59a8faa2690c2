// Environment faults around the node's own storage and locks, through the real
// plugin in a lab VM:
// - the state directory full (a small tmpfs over /var/lib/vnet-cni in the VM's
//   own mount namespace) and read-only (a ro remount of the VM's bind mount):
//   ADD and DEL fail with code 5 and a message saying what to fix, nothing is
//   made or changed, the atomic write leaves no temp file and no truncated
//   state; once the disk is writable again the retry succeeds and the earlier
//   pod's record is intact. Standalone and through the daemon.
// - the xtables lock (/run/xtables.lock, per VM here) held by another process
//   for 10 s: with the nft backend nothing waits; with the legacy backend the
//   node-setup ADD and the last-pod DEL wait XTABLES_WAIT_S, then answer code
//   11 and the retry after the lock is free succeeds. Call times are reported.
import t, { type Test } from 'tap';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { stopChild, waitForLine } from '../../lab/children.js';
import { hostVethName } from '../../control/netlink/veth.js';
import { MODES, REPO, VmCni, azureConflist, execPlugin, pluginStdin } from '../lab/helpers/cni-harness.js';
import { FaultTally } from './helpers/report.js';
import { scaled } from './helpers/scale.js';
import { VmMountNs, nsSnapshot } from './helpers/vm-mountns.js';

const TRIES = scaled(1, 4);
const SOCKET = '/run/vnet-cni/daemon.sock';
const VNETCTL = path.join(REPO, 'dist', 'control', 'cli', 'vnetctl.js');
const tally = new FaultTally('env-storage');
const timings: Record<string, number> = {};

interface Endpoints {
  endpoints: Record<string, { ip: string; phase: string }>;
}

function stateIn(text: string): Endpoints {
  return JSON.parse(text) as Endpoints;
}

// The storage faults are not dataplane-specific (they fail before the kernel is touched): one mode.
const storageMode = MODES[0]!;

t.test(`state directory full or read-only (${storageMode} mode)`, async (t) => {
  const lab = await Lab.up(defaultSpec(2, 12));
  t.teardown(() => lab.down());
  const vm = 'vm1';
  const varLib = lab.vmPaths(vm).varLib;
  const conflist = azureConflist({ cniVersion: '1.0.0', dataplane: storageMode });
  const cni = new VmCni(lab, vm, conflist);
  const keep = await cni.addPod('keep');
  const keepKey = `${keep.containerId}/eth0`;
  const keepRecord = JSON.stringify(cni.state().endpoints[keepKey]);

  /** One round: the fault on, ADD and DEL refused cleanly, the fault off, ADD and DEL succeed. */
  async function round(t: Test, ns: VmMountNs, fault: string, faultOn: string, faultOff: string, msg: RegExp, call: (env: Record<string, string>) => Promise<{ code: number; json?: Record<string, unknown> }>, i: number): Promise<void> {
    const netns = await lab.addPodNetns(vm, `${fault.slice(0, 4)}${i}`);
    const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: `${fault}-${i}`, CNI_NETNS: netns, CNI_IFNAME: 'eth0' };
    const on = await ns.sh(faultOn);
    t.equal(on.code, 0, `${fault}: fault set up ${on.stderr}`);
    const before = await nsSnapshot(ns);
    const add = await call(env);
    const addOk = add.code !== 0 && add.json?.code === 5 && msg.test(String(add.json?.msg));
    t.ok(addOk, `${fault}: ADD fails with code 5 and says what to fix (${String(add.json?.code)}: ${String(add.json?.msg)})`);
    const afterAdd = await nsSnapshot(ns);
    t.same(afterAdd, before, `${fault}: the failed ADD changed nothing (links, state, rules, no temp file)`);
    t.equal(afterAdd.tmp, '', `${fault}: no temp file left by the atomic write`);
    t.doesNotThrow(() => stateIn(afterAdd.state), `${fault}: state file is whole JSON`);
    tally.add(`state dir ${fault}`, 'ADD', addOk && JSON.stringify(afterAdd) === JSON.stringify(before) ? 'code 5, message says what to fix, nothing changed' : 'WRONG');

    const del = await call({ ...env, CNI_COMMAND: 'DEL', CNI_CONTAINERID: keep.containerId, CNI_NETNS: keep.netns });
    const delOk = del.code !== 0 && del.json?.code === 5 && msg.test(String(del.json?.msg));
    t.ok(delOk, `${fault}: DEL fails with code 5 (${String(del.json?.msg)})`);
    const afterDel = await nsSnapshot(ns);
    t.same(afterDel, before, `${fault}: the failed DEL changed nothing: the pod is still wired and recorded`);
    tally.add(`state dir ${fault}`, 'DEL', delOk && JSON.stringify(afterDel) === JSON.stringify(before) ? 'code 5, pod untouched, retry after recovery succeeds' : 'WRONG');

    const off = await ns.sh(faultOff);
    t.equal(off.code, 0, `${fault}: fault removed ${off.stderr}`);
    const retry = await call(env);
    t.equal(retry.code, 0, `${fault}: ADD succeeds once the disk is writable (${String(retry.json?.msg)})`);
    const state = stateIn((await ns.sh('cat /var/lib/vnet-cni/state.json')).stdout);
    t.equal(JSON.stringify(state.endpoints[keepKey]), keepRecord, `${fault}: the earlier pod's record is intact`);
    t.equal(state.endpoints[`${fault}-${i}/eth0`]?.phase, 'ready', `${fault}: the retried pod is recorded ready`);
    const cleanup = await call({ ...env, CNI_COMMAND: 'DEL' });
    t.equal(cleanup.code, 0, `${fault}: DEL of the retried pod`);
    tally.add(`state dir ${fault}`, 'retry after recovery', retry.code === 0 && cleanup.code === 0 ? 'ADD and DEL succeed, earlier records intact' : 'WRONG');
    await lab.removePodNetns(netns);
  }

  const stdin = pluginStdin(conflist);
  const FILL = 'dd if=/dev/zero of=/var/lib/vnet-cni/filler bs=16k 2>/dev/null || true; [ "$(df --output=avail /var/lib/vnet-cni | tail -1)" -eq 0 ]';
  const UNFILL = 'rm -f /var/lib/vnet-cni/filler';

  t.test('full (tmpfs), standalone', async (t) => {
    const ns = await VmMountNs.open(lab, vm, `mount -t tmpfs -o size=1m,mode=0700 vnetfull /var/lib/vnet-cni\ncp -a ${varLib}/. /var/lib/vnet-cni/`);
    try {
      for (let i = 0; i < TRIES; i++) await round(t, ns, 'full', FILL, UNFILL, /full: free space/, (env) => ns.plugin(env, stdin), i);
    } finally {
      // Carry the tmpfs state back so the VM's real store matches the kernel.
      await ns.sh(`cp /var/lib/vnet-cni/state.json ${varLib}/state.json`);
      await ns.close();
    }
  });

  t.test('read-only, standalone', async (t) => {
    const ns = await VmMountNs.open(lab, vm, ':');
    try {
      for (let i = 0; i < TRIES; i++) {
        await round(t, ns, 'readonly', 'mount -o remount,bind,ro /var/lib/vnet-cni', 'mount -o remount,bind,rw /var/lib/vnet-cni', /read-only filesystem: remount it read-write/, (env) => ns.plugin(env, stdin), i);
      }
    } finally {
      await ns.sh('mount -o remount,bind,rw /var/lib/vnet-cni');
      await ns.close();
    }
  });

  t.test('full (tmpfs), through the daemon', async (t) => {
    const ns = await VmMountNs.open(lab, vm, `mount -t tmpfs -o size=1m,mode=0700 vnetfull /var/lib/vnet-cni\ncp -a ${varLib}/. /var/lib/vnet-cni/`);
    let daemon: ChildProcess | undefined;
    try {
      daemon = ns.start([process.execPath, VNETCTL, 'daemon', '--socket', SOCKET]);
      await waitForLine(daemon, /^READY /, 30_000, 'vnetctl daemon');
      const viaDaemon = pluginStdin({ ...conflist, plugins: [{ ...(conflist.plugins as Record<string, unknown>[])[0], daemonSocket: SOCKET }] });
      for (let i = 0; i < TRIES; i++) {
        await round(t, ns, 'full-daemon', FILL, UNFILL, /full: free space/, async (env) => {
          const res = await execPlugin(lab, vm, env, viaDaemon);
          return res;
        }, i);
      }
      const log = readFileSync(path.join(lab.vmPaths(vm).log, 'vnet-cni-daemon.log'), 'utf8');
      t.match(log, /ENOSPC|full/, 'the daemon did the work (its log has the failure)');
    } finally {
      if (daemon) await stopChild(daemon);
      await ns.sh(`cp /var/lib/vnet-cni/state.json ${varLib}/state.json`);
      await ns.close();
    }
  });

  t.test('the earlier pod survives all of it', async (t) => {
    t.equal(JSON.stringify(cni.state().endpoints[keepKey]), keepRecord, 'record unchanged');
    t.equal((await cni.check(keep)).code, 0, 'CHECK passes');
    await cni.del(keep);
    t.same(Object.keys(cni.state().endpoints), [], 'no endpoint left');
  });
});

if (MODES.includes('iptables')) {
  t.test('xtables lock held for 10 s (iptables mode)', async (t) => {
    const lab = await Lab.up(defaultSpec(2, 8));
    t.teardown(() => lab.down());
    const conflist = azureConflist({ cniVersion: '1.0.0', dataplane: 'iptables' });
    const stdin = pluginStdin(conflist);

    for (const [vm, backend] of [['vm1', 'nft'], ['vm2', 'legacy']] as const) {
      t.test(`${backend} backend`, async (t) => {
        if (backend === 'legacy') {
          // What kubelet does to tell CNI plugins and kube-proxy which backend the node uses.
          const hint = await lab.execVm(vm, ['iptables-legacy', '-t', 'mangle', '-N', 'KUBE-IPTABLES-HINT']);
          t.equal(hint.code, 0, `legacy backend hinted ${hint.stderr}`);
        }
        // A lock file of this VM's own, seen as /run/xtables.lock inside its mount namespace only.
        const root = lab.vmPaths(vm).root;
        const ns = await VmMountNs.open(lab, vm, `: >> ${root}/xtables.lock\n[ -e /run/xtables.lock ] || : >> /run/xtables.lock\nmount --bind ${root}/xtables.lock /run/xtables.lock`);
        t.teardown(() => ns.close());
        const hold = async (): Promise<ChildProcess> => {
          // The lock sits on the holder's own fd 9 (flock(1) only takes it), so stopping
          // the holder releases it at once; `flock FILE sleep` would leave it with the sleep.
          const holder = ns.start(['sh', '-c', 'exec 9>>/run/xtables.lock && flock -x 9 && echo HELD && exec sleep 10']);
          await waitForLine(holder, /^HELD$/, 15_000, 'xtables lock holder');
          return holder;
        };

        for (let i = 0; i < TRIES; i++) {
          const netns = await lab.addPodNetns(vm, `lock${i}`);
          const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: `lock-${backend}-${i}`, CNI_NETNS: netns, CNI_IFNAME: 'eth0' };
          const veth = hostVethName(env.CNI_CONTAINERID, 'eth0');
          // ADD of the node's first pod: the node's iptables rules are written now.
          let holder = await hold();
          const add = await ns.plugin(env, stdin);
          timings[`${backend} ADD under lock (ms)`] = Math.max(timings[`${backend} ADD under lock (ms)`] ?? 0, add.ms);
          t.comment(`${backend}: ADD with the xtables lock held took ${add.ms} ms, exit ${add.code}`);
          if (backend === 'nft') {
            t.equal(add.code, 0, `nft: ADD does not need the xtables lock (${String(add.json?.msg)})`);
            tally.add('xtables lock held 10 s', 'ADD (nft backend)', add.code === 0 ? 'succeeds without waiting (nft takes no xtables lock)' : 'WRONG');
            await stopChild(holder);
          } else {
            const ok = add.json?.code === 11 && /xtables lock/.test(String(add.json?.msg));
            t.ok(ok, `legacy: ADD answers code 11 naming the xtables lock (${String(add.json?.code)}: ${String(add.json?.msg)})`);
            const links = await ns.exec(['ip', '-o', 'link', 'show', veth]);
            t.not(links.code, 0, 'legacy: no host veth left');
            const st = (await ns.sh('cat /var/lib/vnet-cni/state.json 2>/dev/null || echo "{}"')).stdout;
            t.notMatch(st, env.CNI_CONTAINERID, 'legacy: no record and no IP held for the pod');
            tally.add('xtables lock held 10 s', 'ADD (legacy backend)', ok ? `code 11 after the ${5} s wait, no pod state; retry succeeds` : 'WRONG');
            // The plugin has given up while the lock was held: release it now rather than
            // sit out the rest of the holder's 10 s.
            await stopChild(holder);
            const retry = await ns.plugin(env, stdin);
            t.equal(retry.code, 0, `legacy: ADD succeeds once the lock is free (${String(retry.json?.msg)})`);
          }
          // DEL of the node's last pod: the node's iptables rules are removed now.
          holder = await hold();
          const del = await ns.plugin({ ...env, CNI_COMMAND: 'DEL' }, stdin);
          timings[`${backend} DEL under lock (ms)`] = Math.max(timings[`${backend} DEL under lock (ms)`] ?? 0, del.ms);
          t.comment(`${backend}: DEL with the xtables lock held took ${del.ms} ms, exit ${del.code}`);
          if (backend === 'nft') {
            t.equal(del.code, 0, 'nft: DEL does not need the xtables lock');
            tally.add('xtables lock held 10 s', 'DEL (nft backend)', del.code === 0 ? 'succeeds without waiting' : 'WRONG');
            await stopChild(holder);
          } else {
            const ok = del.json?.code === 11 && /xtables lock/.test(String(del.json?.msg));
            t.ok(ok, `legacy: DEL answers code 11 naming the xtables lock (${String(del.json?.msg)})`);
            await stopChild(holder);
            const retry = await ns.plugin({ ...env, CNI_COMMAND: 'DEL' }, stdin);
            t.equal(retry.code, 0, `legacy: DEL succeeds once the lock is free (${String(retry.json?.msg)})`);
            tally.add('xtables lock held 10 s', 'DEL of the last pod (legacy backend)', ok && retry.code === 0 ? `code 11 after the ${5} s wait, record kept; retry removes the rules` : 'WRONG');
          }
          const rules = await ns.sh(`iptables-${backend}-save | grep -c -- "-A .*VNET-" || true`);
          t.equal(rules.stdout.trim(), '0', `${backend}: no node rules left after the last pod`);
          const st = (await ns.sh('cat /var/lib/vnet-cni/state.json')).stdout;
          t.same(Object.keys(stateIn(st).endpoints), [], `${backend}: no endpoint left`);
          await lab.removePodNetns(netns);
        }
      });
    }
  });
}

t.teardown(() => tally.flush({ tries: TRIES, ...timings }));
