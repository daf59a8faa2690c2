#!/usr/bin/env node
// The tap runner of scripts/run-tests.mjs: runs the given compiled test files
// in exactly the given order, TEST_JOBS at a time, as buffered tap subtests
// (the same TAP stream `tap` prints). The `tap` CLI sorts its files by name,
// so with -j 2 a long file late in the alphabet (netpol-conformance) ran alone
// at the end; run-tests.mjs orders the files longest first instead.
//
// Test files are compiled JavaScript, so the children run plain `node file`:
// none of the loaders the CLI preloads into every test process (ts-node, the
// mock loader thread, processinfo for coverage), which cost each process about
// a second of CPU on a loaded 2-core machine and that no test here uses. Above
// all, tap's spawn puts processinfo into the child's NODE_OPTIONS, which every
// node process a test starts inherits: each plugin call, daemon and tool then
// loads it and records itself (a plugin VERSION call: 0.11 -> 0.36 CPU-s). So
// each file runs as `env [-u] NODE_OPTIONS... node file`, with the NODE_OPTIONS
// this runner was started with.
//
//   node scripts/tap-jobs.mjs <timeout-s> <jobs> <durations-out|-> file...
// Each child gets TAP_TIMEOUT=<timeout-s> (its own tap timeout, as with the
// CLI's --timeout) and is killed after it. With a durations-out path, the
// run time (tap's time=) of every file that passed is written there as JSON.
import { writeFileSync } from 'node:fs';

const [timeoutArg, jobsArg, durationsOut, ...files] = process.argv.slice(2);
const timeoutS = Number(timeoutArg);
const nodeOptions = process.env.NODE_OPTIONS;
const nodeArgv = (file) => [...(nodeOptions === undefined ? ['-u', 'NODE_OPTIONS'] : [`NODE_OPTIONS=${nodeOptions}`]), process.execPath, file];
const childEnv = { ...process.env, TAP_TIMEOUT: String(timeoutS) };
// The root test here runs as long as the whole suite: never time it out.
process.env.TAP_TIMEOUT = '0';
const { default: t } = await import('tap');
t.jobs = Math.max(1, Math.min(Number(jobsArg) || 1, files.length));
const took = {};
for (const file of files) {
  void t
    .spawn('env', nodeArgv(file), { buffered: t.jobs > 1, timeout: timeoutS * 1000, env: childEnv, name: file, externalID: file, stack: '' })
    .then((results) => {
      // The file's own run time as tap reports it (time=), without process start-up.
      if (results?.ok) took[file] = Math.round(results.time);
    });
}
if (durationsOut && durationsOut !== '-') {
  t.teardown(() => writeFileSync(durationsOut, `${JSON.stringify(took)}\n`));
}
