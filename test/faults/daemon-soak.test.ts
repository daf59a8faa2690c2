// A mixed-verb soak against one VM's node daemon (issue #5): ADD, CHECK,
// DEL, GC, STATUS and VERSION in a random mix, 8 calls in flight through
// libcni (VERSION straight to the plugin, which answers it itself), with a
// bounded number of live pods. Every call must succeed; at the end the node
// holds exactly the live pods (no duplicate IP, reachable, no leak after GC),
// and the daemon's RSS and fds, read at every tenth of the calls while idle,
// are flat (helpers/usage.ts).
import t from 'tap';
import { MODES, azureConflist } from '../lab/helpers/cni-harness.js';
import { FaultTally } from './helpers/report.js';
import { Rng, scaled, seedFromEnv } from './helpers/scale.js';
import { inParallel, keyOf, pluginCall, type DaemonUsage, type LivePod } from './helpers/node-harness.js';
import { daemonStormNode, emptyStats } from './helpers/storm.js';
import { flatProblems, formatSeries } from './helpers/usage.js';

// VNET_SOAK_CALLS: another length (a longer run to see where memory levels off).
const CALLS = Number(process.env.VNET_SOAK_CALLS) || scaled(150, 2000);
const SEGMENTS = 10;
const IN_FLIGHT = 8;
const MAX_LIVE = 24;
const SEED = seedFromEnv();
const mode = MODES[SEED % MODES.length]!;
const tally = new FaultTally('daemon-soak');

type SoakVerb = 'ADD' | 'CHECK' | 'DEL' | 'GC' | 'STATUS' | 'VERSION';

t.test(`${CALLS}-call mixed-verb soak against the node daemon (${mode})`, async (t) => {
  t.comment(`seed ${SEED} (replay with VNET_FAULTS_SEED=${SEED}), ${CALLS} calls, ${IN_FLIGHT} in flight, at most ${MAX_LIVE} live pods`);
  const rng = new Rng(SEED);
  const { lab, daemon, node, witness } = await daemonStormNode(t, MAX_LIVE + IN_FLIGHT + 2, mode);
  const versionConf = azureConflist({ cniVersion: '1.1.0', dataplane: mode, portmap: false });

  /** Pods nobody is working on (CHECK/DEL pick from these), and those being added or deleted (GC lists them too). */
  const idle = new Map<string, LivePod>();
  const busy = new Map<string, LivePod | { containerId: string; ifName: string }>();
  const failures: string[] = [];
  const counts = new Map<SoakVerb, number>();
  let seq = 0;
  let gcs = 0;
  let gcFinished: () => void = () => {};
  let gcDone: Promise<void> = Promise.resolve();
  const stats = emptyStats();

  const one = async (): Promise<void> => {
    const live = idle.size + busy.size;
    const pool: SoakVerb[] = live >= MAX_LIVE ? ['DEL', 'CHECK', 'GC', 'STATUS', 'VERSION'] : idle.size === 0 ? ['ADD', 'ADD', 'GC', 'STATUS', 'VERSION'] : ['ADD', 'ADD', 'CHECK', 'CHECK', 'DEL', 'DEL', 'GC', 'STATUS', 'VERSION'];
    const verb = rng.pick(pool);
    counts.set(verb, (counts.get(verb) ?? 0) + 1);
    try {
      if (verb === 'ADD') {
        // Like a runtime, never start a sandbox while a GC runs with a list taken before it.
        while (gcs > 0) await gcDone;
        const name = `q${seq++}`;
        const ref = { containerId: `st-vm1-${name}`, ifName: 'eth0' };
        busy.set(keyOf(ref), ref);
        try {
          const p = await node.addOne(name, stats);
          if (!p) throw new Error(`ADD ${name} failed ${stats.errors.at(-1) ?? ''}`);
          idle.set(keyOf(p), p);
        } finally {
          busy.delete(keyOf(ref));
        }
      } else if (verb === 'CHECK' || verb === 'DEL') {
        const p = rng.pick([...idle.values()]);
        idle.delete(keyOf(p));
        busy.set(keyOf(p), p);
        try {
          if (verb === 'CHECK') {
            const res = await node.cni.check(p);
            if (res.code !== 0) throw new Error(`CHECK ${p.name}: ${res.stderr.trim()}`);
            idle.set(keyOf(p), p);
          } else if (!(await node.delOne(p, stats))) {
            throw new Error(`DEL ${p.name} failed`);
          }
        } finally {
          busy.delete(keyOf(p));
        }
      } else if (verb === 'GC') {
        // The runtime lists every attachment it knows, including those being set up or torn down.
        const valid = [witness, ...idle.values(), ...busy.values()].map((p) => ({ containerId: p.containerId, ifName: p.ifName }));
        if (gcs++ === 0) gcDone = new Promise((r) => (gcFinished = r));
        try {
          const err = await node.gc(valid as LivePod[]);
          if (err) throw new Error(err);
        } finally {
          if (--gcs === 0) gcFinished();
        }
      } else if (verb === 'STATUS') {
        const res = await node.gcCni.client('status', []);
        if (res.code !== 0) throw new Error(`STATUS: ${res.stderr.trim()}`);
      } else {
        const res = await pluginCall(lab, 'vm1', 'VERSION', versionConf).done;
        if (res.code !== 0 || !/supportedVersions/.test(res.stdout)) throw new Error(`VERSION: ${res.stdout} ${res.stderr}`);
      }
    } catch (err) {
      if (failures.length < 10) failures.push(`${verb}: ${(err as Error).message.slice(0, 300)}`);
    }
  };

  const series: DaemonUsage[] = [];
  const started = Date.now();
  const perSegment = Math.ceil(CALLS / SEGMENTS);
  for (let s = 0; s < SEGMENTS; s++) {
    await inParallel(Array.from({ length: perSegment }), IN_FLIGHT, () => one());
    series.push(await daemon.settledUsage());
    t.comment(`after ${(s + 1) * perSegment} calls (${Math.round((Date.now() - started) / 1000)} s): ${formatSeries(series.slice(-1))}, ${idle.size} live, ${failures.length} failures`);
  }
  const calls = perSegment * SEGMENTS;
  t.comment(`${calls} calls in ${Math.round((Date.now() - started) / 1000)} s: ${[...counts].map(([v, n]) => `${v} ${n}`).join(', ')}; ${stats.failures} failed attempts retried`);
  t.same(failures, [], 'every call succeeded (ADD/DEL with kubelet retries)');
  const live = [...idle.values()];
  t.same(await node.check(live), [], `the ${live.length} live pods: no duplicate IP, reachable, GC leaves nothing else`);
  // Reference: the checkpoint at 30 % of the calls (warm-up, see helpers/usage.ts).
  const flat = flatProblems(series, 2);
  t.same(flat, [], `daemon resources flat (fds throughout, RSS from the 30 % checkpoint on): ${formatSeries(series)}`);
  t.equal(daemon.starts, 1, 'the daemon never restarted');
  for (const [verb, n] of counts) tally.add(`daemon, ${mode}`, `${verb} in a ${calls}-call mix`, failures.some((f) => f.startsWith(verb)) ? 'SOME FAILED' : 'all succeeded', n);
  tally.add(`daemon, ${mode}`, `RSS and fds over ${calls} calls`, flat.length ? 'NOT FLAT' : `flat: ${formatSeries(series)}`);
  tally.flush({ calls, seed: SEED, 'in flight': IN_FLIGHT, 'max live pods': MAX_LIVE });
});
