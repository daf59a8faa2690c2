#!/usr/bin/env node
// Runs the compiled tap suites (dist/test/<suite>/**/*.test.js) and ends with
// the plain "N passed, N failed" line CI reads. Usage:
//   node scripts/run-tests.mjs [suite ...] [-- extra tap args]
// Suites: unit, bpf, lab (default: all). Build first: npm run build.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
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

const args = ['--disable-coverage', '--timeout', process.env.TEST_TIMEOUT ?? '900', '-j', process.env.TEST_JOBS ?? '2', ...extra, ...files];
const child = spawn(path.join(root, 'node_modules', '.bin', 'tap'), args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
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
  process.exit(code ?? 1);
});
