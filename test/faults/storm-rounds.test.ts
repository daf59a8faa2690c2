// Repeated ADD/DEL storms on one lab VM through the node daemon (issue #7
// item 5): every round ADDs the pods (32 in flight, libcni), checks them (no
// duplicate IP, all reachable, GC leaves nothing else), DELs them all and
// checks again. The daemon's RSS and open fds are read from /proc after each
// round (idle) and must stay flat (helpers/usage.ts says what flat means).
import t from 'tap';
import { MODES } from '../lab/helpers/cni-harness.js';
import { FaultTally } from './helpers/report.js';
import { FULL, scaled, seedFromEnv } from './helpers/scale.js';
import { type DaemonUsage } from './helpers/node-harness.js';
import { daemonStormNode, emptyStats } from './helpers/storm.js';
import { flatProblems, formatSeries } from './helpers/usage.js';

const ROUNDS = scaled(2, 10);
// 249 + the witness: the 250 pods a lab VM can hold.
const PODS = scaled(24, 249);
const IN_FLIGHT = 32;
const SEED = seedFromEnv();
/** One dataplane per run, alternating with the seed (VNET_TEST_MODES narrows it); the full form runs every mode only when asked. */
const RUN_MODES = FULL && process.env.VNET_FAULTS_ALL_MODES === '1' ? MODES : [MODES[SEED % MODES.length]!];
const tally = new FaultTally('storm-rounds');

for (const mode of RUN_MODES) {
  t.test(`${ROUNDS} rounds of ${PODS}-pod ADD/DEL storms through the daemon (${mode})`, async (t) => {
    t.comment(`seed ${SEED} (replay with VNET_FAULTS_SEED=${SEED}; picks the dataplane)`);
    const { daemon, node } = await daemonStormNode(t, PODS + 1, mode);
    const before = await daemon.settledUsage();
    const series: DaemonUsage[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const started = Date.now();
      const stats = emptyStats();
      const names = Array.from({ length: PODS }, (_, i) => `r${round}p${i}`);
      const live = await node.addStorm(names, IN_FLIGHT, stats);
      t.equal(live.length, PODS, `round ${round}: every ADD succeeded (${stats.failures} failed attempts: ${stats.errors.join(' | ')})`);
      const up = await node.check(live);
      t.same(up, [], `round ${round}: no duplicate IP, all reachable, GC leaves only the live pods`);
      const left = await node.delStorm(live, IN_FLIGHT, stats);
      t.same(left.map((p) => p.name), [], `round ${round}: every DEL succeeded`);
      const down = await node.check([]);
      t.same(down, [], `round ${round}: nothing left but the witness`);
      const usage = await daemon.settledUsage();
      series.push(usage);
      t.comment(`round ${round}: ${Math.round((Date.now() - started) / 1000)} s, RSS ${(usage.rssKiB / 1024).toFixed(1)} MiB, ${usage.fds} fds, ${stats.failures} failed attempts`);
      tally.add(`daemon, ${mode}`, `${PODS} ADDs + ${PODS} DELs, ${IN_FLIGHT} in flight`, up.length || down.length || left.length || live.length !== PODS ? 'INVARIANT BROKEN' : 'no dup IP, all reachable, no leak');
    }
    const flat = flatProblems(series);
    t.same(flat, [], `daemon resources flat over the rounds: before ${(before.rssKiB / 1024).toFixed(1)} MiB/${before.fds} fds; ${formatSeries(series)}`);
    tally.add(`daemon, ${mode}`, `RSS and fds over ${ROUNDS} rounds`, flat.length ? 'NOT FLAT' : `flat: ${formatSeries(series)}`);
    t.equal(daemon.starts, 1, 'the daemon never restarted');
  });
}
t.teardown(() => tally.flush({ rounds: ROUNDS, pods: PODS, 'in flight': IN_FLIGHT, seed: SEED }));
