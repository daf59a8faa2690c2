// Environment faults around the node's address pool, through the real plugin:
// - the wireserver down, hanging, slower than the timeout, answering an HTTP
//   error, garbage, truncated XML, a 4 MiB body, 100 000-deep nesting, a
//   "billion laughs" DOCTYPE, or a well-formed document for another NIC. On a
//   node without a cached pool: code 11 naming the wireserver, nothing changed,
//   and the first ADD after recovery succeeds. On a node with a cached (stale)
//   pool: the ADD succeeds from the cache and the log says so.
// - the NIC losing a secondary IP a pod holds (Lab.removeSecondaryIp): the pod
//   keeps it, the address is flagged orphaned (store, `vnetctl debug pool`,
//   log), never handed out, not reused after the pod's DEL while absent, and
//   allocatable again once the NIC has it back.
// Neither depends on the dataplane (both act before the kernel is touched): one mode.
import t from 'tap';
import path from 'node:path';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import type { WireFault } from '../../lab/wire-fault.js';
import { MODES, REPO, VmCni, azureConflist, execPlugin, pluginStdin, vmSnapshot } from '../lab/helpers/cni-harness.js';
import { FaultTally } from './helpers/report.js';
import { scaled } from './helpers/scale.js';

const TRIES = scaled(1, 3);
const VNETCTL = path.join(REPO, 'dist', 'control', 'cli', 'vnetctl.js');
const tally = new FaultTally('env-pool');
const mode = MODES[0]!;
const TIMEOUT_MS = 1000;

const FAULTS: { name: string; fault: WireFault; msg: RegExp }[] = [
  { name: 'down (connection refused)', fault: { mode: 'down' }, msg: /request failed/ },
  { name: 'hangs (never answers)', fault: { mode: 'hang' }, msg: /no complete answer within/ },
  { name: 'slow (3 s, timeout 1 s)', fault: { mode: 'slow', delayMs: 3000 }, msg: /no complete answer within/ },
  { name: 'HTTP 500', fault: { mode: 'error', status: 500 }, msg: /HTTP 500/ },
  { name: 'garbage body', fault: { mode: 'garbage' }, msg: /bad interface XML/ },
  { name: 'truncated XML', fault: { mode: 'truncated' }, msg: /bad interface XML/ },
  { name: 'huge body (4 MiB)', fault: { mode: 'huge' }, msg: /exceeds the \d+-byte limit/ },
  { name: 'nested 20 000 deep', fault: { mode: 'nested' }, msg: /bad interface XML/ },
  { name: 'billion laughs (DOCTYPE entities)', fault: { mode: 'entities' }, msg: /DOCTYPE.*not allowed/ },
  { name: 'wrong content (another NIC)', fault: { mode: 'wrong' }, msg: /no pool for NIC/ },
];

function log(lab: Lab, vm: string): string {
  try {
    return readFileSync(path.join(lab.vmPaths(vm).log, 'azure-vnet.log'), 'utf8');
  } catch {
    return '';
  }
}

t.test(`wireserver faults (${mode} mode)`, async (t) => {
  const lab = await Lab.up(defaultSpec(2, 4));
  t.teardown(() => lab.down());
  const conflist = azureConflist({ cniVersion: '1.0.0', dataplane: mode, ipam: { wireserverTimeoutMs: TIMEOUT_MS } });
  const stdin = pluginStdin(conflist);
  const vm = 'vm1';
  const stateFile = path.join(lab.vmPaths(vm).varLib, 'state.json');

  t.test('node without a cached pool: code 11, nothing changed, next call after recovery succeeds', async (t) => {
    const netns = await lab.addPodNetns(vm, 'ws');
    const statusStdin = pluginStdin(azureConflist({ cniVersion: '1.1.0', dataplane: mode, portmap: false, ipam: { wireserverTimeoutMs: TIMEOUT_MS } }));
    const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'ws-1', CNI_NETNS: netns, CNI_IFNAME: 'eth0' };
    for (const f of FAULTS) {
      for (let i = 0; i < TRIES; i++) {
        rmSync(stateFile, { force: true }); // a node that never reached the wireserver (no pods here)
        await lab.setWireserverFault(f.fault);
        const before = await vmSnapshot(lab, vm);
        const started = Date.now();
        const res = await execPlugin(lab, vm, env, stdin);
        const ms = Date.now() - started;
        const ok = res.code !== 0 && res.json?.code === 11 && /wireserver/.test(String(res.json?.msg)) && f.msg.test(String(res.json?.msg));
        t.ok(ok, `${f.name}: code 11 naming the wireserver and the problem (${ms} ms; ${String(res.json?.code)}: ${String(res.json?.msg).slice(0, 300)})`);
        const same = JSON.stringify(await vmSnapshot(lab, vm)) === JSON.stringify(before);
        t.ok(same, `${f.name}: nothing changed`);
        await lab.setWireserverFault({ mode: 'ok' });
        // The next call (STATUS re-reads the pool) works at once; no state from the failure is in the way.
        const next = await execPlugin(lab, vm, { CNI_COMMAND: 'STATUS' }, statusStdin);
        t.equal(next.code, 0, `${f.name}: the next call after recovery succeeds (${String(next.json?.msg)})`);
        tally.add('wireserver, no cached pool', f.name, ok && same && next.code === 0 ? 'code 11 naming the cause, nothing changed; next call after recovery succeeds' : 'WRONG');
      }
    }
    // And a full ADD/DEL on a node whose every earlier call failed.
    rmSync(stateFile, { force: true });
    const add = await execPlugin(lab, vm, env, stdin);
    t.equal(add.code, 0, `ADD after all the faults succeeds (${String(add.json?.msg)})`);
    t.equal((await execPlugin(lab, vm, { ...env, CNI_COMMAND: 'DEL' }, stdin)).code, 0, 'DEL');
    await lab.removePodNetns(netns);
  });

  t.test('node with a cached pool: ADD succeeds from the cache', async (t) => {
    const cni = new VmCni(lab, vm, conflist);
    const first = await cni.addPod('cached');
    for (const f of [FAULTS[0]!, FAULTS[1]!, FAULTS[8]!]) {
      for (let i = 0; i < TRIES; i++) {
        // Age the cached pool past the 30 s refresh interval, as time would.
        const st = JSON.parse(readFileSync(stateFile, 'utf8')) as { poolFetchedAt?: number };
        st.poolFetchedAt = 0;
        writeFileSync(stateFile, JSON.stringify(st));
        await lab.setWireserverFault(f.fault);
        const logBefore = log(lab, vm).length;
        const netns = await lab.addPodNetns(vm, `c${f.fault.mode.slice(0, 4)}${i}`);
        const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: `cached-${f.fault.mode}-${i}`, CNI_NETNS: netns, CNI_IFNAME: 'eth0' };
        const res = await execPlugin(lab, vm, env, stdin);
        await lab.setWireserverFault({ mode: 'ok' });
        t.equal(res.code, 0, `${f.name}: ADD succeeds from the cached pool (${String(res.json?.msg)})`);
        const warned = /pool source failed; using the cached pool/.test(log(lab, vm).slice(logBefore));
        t.ok(warned, `${f.name}: the log says the cached pool was used`);
        const del = await execPlugin(lab, vm, { ...env, CNI_COMMAND: 'DEL' }, stdin);
        t.equal(del.code, 0, `${f.name}: DEL`);
        tally.add('wireserver, cached pool', f.name, res.code === 0 && warned ? 'ADD succeeds from the cached pool, log warns' : 'WRONG');
        await lab.removePodNetns(netns);
      }
    }
    await cni.del(first);
  });
});

t.test(`NIC loses a secondary IP a pod holds (${mode} mode)`, async (t) => {
  const lab = await Lab.up(defaultSpec(2, 3));
  t.teardown(() => lab.down());
  const vm = 'vm2';
  const conflist = azureConflist({ cniVersion: '1.1.0', dataplane: mode, portmap: false });
  const stdin = pluginStdin(conflist);
  const cni = new VmCni(lab, vm, conflist);
  const status = (): ReturnType<typeof execPlugin> => execPlugin(lab, vm, { CNI_COMMAND: 'STATUS' }, stdin);
  const holdings = (): Record<string, { ip: string; orphaned?: boolean }> => (cni.state().ipam as { holdings: Record<string, { ip: string; orphaned?: boolean }> }).holdings;

  for (let i = 0; i < TRIES; i++) {
    const a = await cni.addPod(`orph${i}`);
    const lost = a.ip;
    const logBefore = cni.log().length;
    await lab.removeSecondaryIp(vm, lost);
    const st = await status();
    t.equal(st.code, 0, `STATUS re-reads the pool and stays ready (${String(st.json?.msg)})`);
    const flagged = holdings()[`${a.containerId}/eth0`]?.orphaned === true;
    t.ok(flagged, 'store: the holding is flagged orphaned');
    t.equal(holdings()[`${a.containerId}/eth0`]?.ip, lost, 'store: the pod keeps its IP');
    const view = await lab.execVm(vm, [process.execPath, VNETCTL, 'debug', 'pool']);
    const shown = new RegExp(`${lost.replaceAll('.', '\\.')}\\s.*ORPHANED`).test(view.stdout) && /orphaned 1/.test(view.stdout);
    t.ok(shown, `debug pool shows it ORPHANED\n${view.stdout}`);
    const logged = new RegExp(`"ip":"${lost.replaceAll('.', '\\.')}".*left the NIC`).test(cni.log().slice(logBefore));
    t.ok(logged, 'the log names the orphaned address');
    t.equal((await cni.check(a)).code, 0, 'the pod itself is untouched (CHECK passes)');
    tally.add('secondary IP removed from the NIC', 'while a pod holds it', flagged && shown && logged ? 'pod keeps it; flagged orphaned in store, debug pool and log' : 'WRONG');

    // Fill the rest of the pool: the orphan is never handed out.
    const others = [await cni.addPod(`oth${i}a`), await cni.addPod(`oth${i}b`)];
    const netns = await lab.addPodNetns(vm, `over${i}`);
    const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: `over-${i}`, CNI_NETNS: netns, CNI_IFNAME: 'eth0' };
    const full = await execPlugin(lab, vm, env, stdin);
    const neverHanded = full.json?.code === 100 && !others.some((p) => p.ip === lost);
    t.ok(neverHanded, `pool exhausted without the orphan (${String(full.json?.msg)})`);
    tally.add('secondary IP removed from the NIC', 'pool exhausted meanwhile', neverHanded ? 'never handed out (code 100)' : 'WRONG');

    await cni.del(a);
    const again = await execPlugin(lab, vm, env, stdin);
    const notReused = again.json?.code === 100;
    t.ok(notReused, `after the owner's DEL the address is not reused while absent (${String(again.json?.msg)})`);
    t.notOk(Object.values(holdings()).some((h) => h.ip === lost), 'and nobody holds it');
    tally.add('secondary IP removed from the NIC', 'owner DELeted while absent', notReused ? 'not reused (code 100)' : 'WRONG');

    await lab.addSecondaryIp(vm, lost);
    const ready = await status();
    t.equal(ready.code, 0, 'STATUS ready once the NIC has it back');
    const back = await execPlugin(lab, vm, env, stdin);
    const reused = back.code === 0 && (back.json?.ips as { address: string }[] | undefined)?.[0]?.address.startsWith(`${lost}/`) === true;
    t.ok(reused, `back on the NIC: allocatable again (${JSON.stringify(back.json?.ips ?? back.json?.msg)})`);
    tally.add('secondary IP removed from the NIC', 'added back to the NIC', reused ? 'allocatable again' : 'WRONG');
    await execPlugin(lab, vm, { ...env, CNI_COMMAND: 'DEL' }, stdin);
    for (const p of others) await cni.del(p);
    await lab.removePodNetns(netns);
  }
  t.same(Object.keys(cni.state().endpoints), [], 'no endpoint left');
});

t.teardown(() => tally.flush({ tries: TRIES, wireserverTimeoutMs: TIMEOUT_MS }));
