// The node daemon killed with -9 in the middle of a concurrent ADD storm and
// of the DEL storm that follows (issue #5): 32 calls in flight through libcni
// with daemonSocket; the daemon is restarted at once (it reconciles while the
// storm goes on, some calls meanwhile running standalone), and failed calls
// are retried like kubelet does. Afterwards: no duplicate IP, every live pod
// reachable, and a GC of the live set leaves no IP, link, rule or map entry.
import t from 'tap';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { MODES } from '../lab/helpers/cni-harness.js';
import { FaultTally } from './helpers/report.js';
import { FULL, scaled, seedFromEnv } from './helpers/scale.js';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { azureConflist } from '../lab/helpers/cni-harness.js';
import { pollUntil } from '../../lab/children.js';
import { VmDaemon, leakProblems, nodeView, pluginCall, resultIp, sleep, uniquenessProblems } from './helpers/node-harness.js';
import { daemonStormNode, emptyStats, type StormStats } from './helpers/storm.js';

// 249 + the witness: the 250 pods a lab VM can hold.
const PODS = scaled(32, 249);
/** A supervisor's restart delay: the window in which plugins run standalone and the new daemon reconciles under them. */
const RESTART_DELAY_MS = 1000;
const SEED = seedFromEnv();
/** CI runs one dataplane per run (alternating with the seed); the full form runs all. */
const RUN_MODES = FULL ? MODES : [MODES[SEED % MODES.length]!];
const IN_FLIGHT = 32;
/** Fractions of the storm's calls completed when the daemon is killed. */
const ADD_KILLS = FULL ? [0.25, 0.7] : [0.4];
const DEL_KILLS = [0.5];
const tally = new FaultTally('daemon-storm-kill');

const summary = (s: StormStats): string => `${s.failures} failed attempts, ${s.retried} calls retried, ${s.gaveUp.length} given up`;

// The window the storm hits by chance, made deterministic: a standalone ADD
// (the daemon is down) pauses right after it recorded its intent (the
// test-only plugin entry's pause point), the daemon starts and reconciles,
// then the ADD resumes. Reconcile must leave an endpoint that a live process
// is still creating alone.
t.test('daemon restart while a standalone ADD is in flight: reconcile leaves it alone', async (t) => {
  const mode = RUN_MODES[0]!;
  const lab = await Lab.up(defaultSpec(1, 8));
  const daemon = new VmDaemon(lab, 'vm1');
  t.teardown(async () => {
    await daemon.stop();
    await lab.down();
  });
  const conf = azureConflist({ cniVersion: '1.1.0', dataplane: mode, portmap: false, extra: { daemonSocket: '/run/vnet-cni/daemon.sock' } });
  const stateFile = path.join(lab.vmPaths('vm1').varLib, 'state.json');
  const phaseOf = (key: string): string | undefined => {
    try {
      return (JSON.parse(readFileSync(stateFile, 'utf8')) as { endpoints: Record<string, { phase: string }> }).endpoints[key]?.phase;
    } catch {
      return undefined;
    }
  };
  const first = { name: 'a', containerId: 'race-a', ifName: 'eth0', netns: await lab.addPodNetns('vm1', 'a') };
  const a = resultIp(await pluginCall(lab, 'vm1', 'ADD', conf, first).done);
  t.ok(a, 'a first pod (standalone: no daemon yet)');

  const pause = path.join(lab.vmPaths('vm1').run, 'pause-race');
  const pod = { name: 'b', containerId: 'race-b', ifName: 'eth0', netns: await lab.addPodNetns('vm1', 'b') };
  const call = pluginCall(lab, 'vm1', 'ADD', conf, pod, undefined, { VNET_CNI_TEST_PAUSE_AT: 'add:after-intent', VNET_CNI_TEST_PAUSE_FILE: '/run/vnet-cni/pause-race' });
  await pollUntil(() => (existsSync(`${pause}.reached`) || call.exited() ? true : undefined), 60_000, 20, 'the ADD reaching its pause point');
  t.equal(phaseOf(`${pod.containerId}/eth0`), 'creating', 'paused between intent and ready');
  await daemon.start(); // reconcile runs before READY
  writeFileSync(pause, 'go');
  const res = await call.done;
  const ip = resultIp(res);
  const log = readFileSync(path.join(lab.vmPaths('vm1').log, 'vnet-cni-daemon.log'), 'utf8');
  t.match(log, new RegExp(`"inProgress":\\["${pod.containerId}/eth0"\\]`), 'reconcile saw the endpoint in progress and left it');
  t.ok(ip, `the paused ADD completes after the restart ${res.stdout}`);
  t.equal(phaseOf(`${pod.containerId}/eth0`), 'ready', 'its endpoint is in the store, ready');
  // The daemon must not hand the same address out again.
  const third = { name: 'c', containerId: 'race-c', ifName: 'eth0', netns: await lab.addPodNetns('vm1', 'c') };
  const c = resultIp(await pluginCall(lab, 'vm1', 'ADD', conf, third).done);
  t.not(c, ip, 'the next ADD (through the daemon) gets another address');
  const live = [{ ...first, ip: a! }, { ...pod, ip: ip! }, { ...third, ip: c! }];
  t.same(uniquenessProblems(await nodeView(lab, 'vm1'), live), [], 'no IP twice, store and netns agree');
  rmSync(pause, { force: true });
  rmSync(`${pause}.reached`, { force: true });
  tally.add('daemon restart', 'reconcile while a standalone ADD is between intent and ready (pause point)', ip && phaseOf(`${pod.containerId}/eth0`) === 'ready' ? 'ADD completes, record kept, no dup IP' : 'WRONG');
});

for (const mode of RUN_MODES) {
  t.test(`daemon kill -9 during a ${PODS}-pod ADD/DEL storm (${mode})`, async (t) => {
    t.comment(`seed ${SEED} (replay with VNET_FAULTS_SEED=${SEED}; picks the CI form's dataplane)`);
    const { lab, daemon, node } = await daemonStormNode(t, PODS + 1, mode);

    /** Kill when `done` crosses a fraction; restart at once while the storm goes on. */
    const killer = (fractions: number[], total: number, log: string[]) => {
      const pending = fractions.map((f) => Math.max(1, Math.floor(f * total)));
      const restarts: Promise<void>[] = [];
      const onDone = (done: number): void => {
        while (pending.length && done >= pending[0]!) {
          pending.shift();
          restarts.push(
            (async () => {
              const busy = await daemon.waitBusy();
              const landed = await daemon.kill9();
              log.push(`killed after ${done}/${total}${landed ? (busy ? ' while serving' : ' (idle)') : ' (not running)'}`);
              await sleep(RESTART_DELAY_MS);
              await daemon.start();
            })(),
          );
        }
      };
      return { onDone, settle: () => Promise.all(restarts) };
    };

    const started = Date.now();
    const addStats = emptyStats();
    const addKills: string[] = [];
    const k1 = killer(ADD_KILLS, PODS, addKills);
    const names = Array.from({ length: PODS }, (_, i) => `s${i}`);
    const live = await node.addStorm(names, IN_FLIGHT, addStats, k1.onDone);
    await k1.settle();
    t.comment(`ADD storm: ${addKills.join(', ')}; ${summary(addStats)}; ${Math.round((Date.now() - started) / 1000)} s; errors seen: ${addStats.errors.join(' | ')}`);
    t.same(addStats.gaveUp, [], 'every ADD succeeded within the retries');
    t.equal(live.length, PODS, 'every pod is up');
    const addProblems = await node.check(live);
    t.same(addProblems, [], 'no duplicate IP, every pod reachable, GC leaves nothing but the live pods');
    tally.add(`daemon storm, ${mode}`, `kill -9 at ${ADD_KILLS.map((f) => `${f * 100}%`).join(' and ')} of ${PODS} ADDs (${IN_FLIGHT} in flight), restart`, addProblems.length || addStats.gaveUp.length ? 'INVARIANT BROKEN' : `${summary(addStats)}; no dup IP, all reachable, no leak`);

    const delStats = emptyStats();
    const delKills: string[] = [];
    const k2 = killer(DEL_KILLS, live.length, delKills);
    const left = await node.delStorm(live, IN_FLIGHT, delStats, k2.onDone);
    await k2.settle();
    t.comment(`DEL storm: ${delKills.join(', ')}; ${summary(delStats)}; errors seen: ${delStats.errors.join(' | ')}`);
    t.same(left.map((p) => p.name), [], 'every DEL succeeded within the retries');
    const delProblems = await node.check([]);
    t.same(delProblems, [], 'only the witness is left, nothing leaked');
    tally.add(`daemon storm, ${mode}`, `kill -9 at ${DEL_KILLS.map((f) => `${f * 100}%`).join(' and ')} of ${live.length} DELs, restart`, delProblems.length || left.length ? 'INVARIANT BROKEN' : `${summary(delStats)}; no leak`);

    await node.cni.del(node.witness!);
    t.same(leakProblems(await nodeView(lab, 'vm1'), [], mode), [], 'the last DEL removes all node state');
    t.comment(`wall ${Math.round((Date.now() - started) / 1000)} s, daemon starts ${daemon.starts}`);
  });
}
t.teardown(() => tally.flush({ pods: PODS, 'in flight': IN_FLIGHT, 'ADD kill points': ADD_KILLS.join(' '), 'DEL kill points': DEL_KILLS.join(' ') }));
