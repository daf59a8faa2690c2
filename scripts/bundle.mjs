#!/usr/bin/env node
// Bundles the CNI plugin binaries (control/plugin/azure-vnet.ts, azure-vnet-ipam.ts)
// into dist/bundle/, which bin/azure-vnet and bin/azure-vnet-ipam run when
// present. Why: every CNI call is a fresh node process, and resolving and
// loading ~100 separate modules costs more than the call itself when it is
// forwarded to the daemon.
//
// Code splitting keeps the entry small: the in-process Agent (dataplanes,
// IPAM sources, native addon glue) and the daemon client are separate chunks
// loaded by the dynamic imports in control/plugin/main.ts, so a forwarded call never
// parses the Agent. The native addon and bpf/*.o are found from the repo root
// at run time (native/index.ts repoRoot(): dist/bundle -> <repo>), so the
// bundle must stay at dist/bundle inside the install.
//
// Other engineers and CI rebuild while plugin processes run, and a running
// process imports its chunks lazily: so the directory is never emptied.
// Chunks have content-hashed names and are added next to the old ones; the
// two entry files are replaced by rename last; chunks no build references
// any more are pruned only once they are an hour old.
import { build } from 'esbuild';
import { mkdirSync, readdirSync, renameSync, statSync, unlinkSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outdir = path.join(root, 'dist', 'bundle');
const ENTRIES = { 'azure-vnet': 'control/plugin/azure-vnet.ts', 'azure-vnet-ipam': 'control/plugin/azure-vnet-ipam.ts' };
const PRUNE_AFTER_MS = 60 * 60 * 1000;

const result = await build({
  absWorkingDir: root,
  entryPoints: ENTRIES,
  outdir,
  write: false,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  chunkNames: '[name]-[hash]', // flat: native/index.ts finds the repo root two levels up
  sourcemap: 'linked',
  legalComments: 'none',
  // CommonJS dependencies (pino) call require() for node builtins.
  banner: { js: "import { createRequire as __vnetCreateRequire } from 'node:module'; const require = __vnetCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});

mkdirSync(outdir, { recursive: true });
const entryFiles = new Set(Object.keys(ENTRIES).flatMap((e) => [`${e}.js`, `${e}.js.map`]));
const written = new Set();
function replace(file, contents) {
  const tmp = path.join(outdir, `.${path.basename(file)}.${process.pid}.tmp`);
  writeFileSync(tmp, contents);
  renameSync(tmp, file);
}
const outputs = result.outputFiles;
// Chunks first (hashed names: an existing file has the same content), entries last.
for (const f of outputs.filter((o) => !entryFiles.has(path.basename(o.path)))) {
  written.add(path.basename(f.path));
  if (!existsSync(f.path)) replace(f.path, f.contents);
}
for (const f of outputs.filter((o) => entryFiles.has(path.basename(o.path)))) {
  written.add(path.basename(f.path));
  replace(f.path, f.contents);
}
let pruned = 0;
for (const name of readdirSync(outdir)) {
  if (written.has(name)) continue;
  const file = path.join(outdir, name);
  try {
    if (Date.now() - statSync(file).mtimeMs > PRUNE_AFTER_MS) {
      unlinkSync(file);
      pruned++;
    }
  } catch {
    /* another build pruned it */
  }
}
const total = outputs.filter((o) => !o.path.endsWith('.map')).reduce((n, o) => n + o.contents.length, 0);
process.stdout.write(`bundle: ${written.size} files (${(total / 1024).toFixed(0)} KiB of code) in ${path.relative(root, outdir)}${pruned ? `, ${pruned} stale pruned` : ''}\n`);
