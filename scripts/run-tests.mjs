#!/usr/bin/env node
// Runs the compiled tap suites (dist/test/<suite>/**/*.test.js) and ends with
// the plain "N passed, N failed" line CI reads. Usage:
//   node scripts/run-tests.mjs [suite ...] [-- extra tap args]
// Suites: unit, bpf, lab, faults (default: all), or single files. Build first:
// npm run build.
//
// Order: longest first, by test/durations.json (each file's last recorded
// run time in ms; a file without an entry counts as 1 s in unit, 30 s
// elsewhere; ties in name order), so with TEST_JOBS=2 the run does not end on
// one long file running alone. scripts/tap-jobs.mjs runs them in that order
// (the tap CLI would sort them by name); with extra tap args the tap CLI runs
// them instead. TEST_DURATIONS=update rewrites test/durations.json with this
// run's times (files that passed; the others keep their entries).
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const argv = process.argv.slice(2);
const dash = argv.indexOf('--');
const suites = (dash === -1 ? argv : argv.slice(0, dash)).filter(Boolean);
const extra = dash === -1 ? [] : argv.slice(dash + 1);
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const testRoot = path.join(root, 'dist', 'test');
if (!existsSync(testRoot)) {
  console.error('dist/test is missing: run `npm run build` first');
  process.exit(2);
}

function sourceOf(compiled) {
  return path.join(root, path.relative(path.join(root, 'dist'), compiled)).replace(/\.js$/, '.ts');
}

function collect(dir, out) {
  for (const name of readdirSync(dir).sort()) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) collect(p, out);
    // Only tests whose source still exists: dist/ is never emptied by a build,
    // so a moved or deleted test would otherwise keep running from a stale file.
    else if (name.endsWith('.test.js') && existsSync(sourceOf(p))) out.push(path.relative(root, p));
  }
  return out;
}

const wanted = suites.length ? suites : readdirSync(testRoot).filter((d) => statSync(path.join(testRoot, d)).isDirectory());
const files = wanted.flatMap((s) => {
  const p = path.join(testRoot, s);
  if (!existsSync(p)) return [];
  return statSync(p).isDirectory() ? collect(p, []) : [path.relative(root, p)];
});
if (files.length === 0) {
  console.error(`no test files for: ${wanted.join(' ')}`);
  process.exit(2);
}

/** A file with no recorded time: about a typical file of its suite, so a new long one does not start last. */
const unknownMs = (file) => (file.includes(`${path.sep}unit${path.sep}`) ? 1_000 : 30_000);
const durationsFile = path.join(root, 'test', 'durations.json');
const keyOf = (file) => path.relative(testRoot, path.join(root, file)).replace(/\.test\.js$/, '');
let durations = {};
try {
  durations = JSON.parse(readFileSync(durationsFile, 'utf8'));
} catch {
  // no list (or a broken one): name order
}
const expectedMs = (file) => (typeof durations[keyOf(file)] === 'number' ? durations[keyOf(file)] : unknownMs(file));
files.sort((a, b) => expectedMs(b) - expectedMs(a) || a.localeCompare(b, 'en'));

const timeout = process.env.TEST_TIMEOUT ?? '900';
const jobs = process.env.TEST_JOBS ?? '2';
const record = process.env.TEST_DURATIONS === 'update';
const tookFile = path.join(os.tmpdir(), `vnet-test-durations-${process.pid}.json`);
const [command, args] = extra.length
  ? [path.join(root, 'node_modules', '.bin', 'tap'), ['--disable-coverage', '--timeout', timeout, '-j', jobs, ...extra, ...files]]
  : [process.execPath, [path.join(root, 'scripts', 'tap-jobs.mjs'), timeout, jobs, record ? tookFile : '-', ...files]];
const child = spawn(command, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
let tail = '';
child.stdout.on('data', (b) => {
  process.stdout.write(b);
  tail = (tail + b.toString()).slice(-4000);
});
child.on('close', (code) => {
  const m = /# \{ total: (\d+), pass: (\d+)(?:, fail: (\d+))?(?:, skip: (\d+))?/.exec(tail);
  if (m) {
    const failed = Number(m[3] ?? 0) + (code !== 0 && !m[3] ? 1 : 0);
    console.log(`${m[2]} passed, ${failed} failed${m[4] ? `, ${m[4]} skipped` : ''}`);
  } else {
    console.log(`0 passed, 1 failed`);
  }
  if (record && existsSync(tookFile)) {
    const took = JSON.parse(readFileSync(tookFile, 'utf8'));
    rmSync(tookFile, { force: true });
    for (const [file, ms] of Object.entries(took)) durations[keyOf(file)] = Math.round(ms / 100) * 100;
    const sorted = Object.entries(durations).sort(([ka, a], [kb, b]) => b - a || ka.localeCompare(kb, 'en'));
    writeFileSync(durationsFile, `${JSON.stringify(Object.fromEntries(sorted), null, 1)}\n`);
    console.log(`recorded ${Object.keys(took).length} file times in test/durations.json`);
  }
  process.exit(code ?? 1);
});
