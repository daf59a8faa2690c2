// The dependency rules of docs/architecture.md "Boundaries", checked on the
// TypeScript sources (every static import, `export ... from` and dynamic
// import() with a literal path):
//   - cni/ (the CNI protocol package) imports only cni/, packages and node:;
//   - no product module (cni/, control/, native/) imports lab/, test/ or bench/.
// And the runtime image copies only what a node runs.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const PRODUCT = ['cni', 'control', 'native'];

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(REPO, dir), { withFileTypes: true })) {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(rel));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

/** Module specifiers a source file imports. Comments are dropped first so prose cannot match. */
export function importsOf(text: string): string[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
  const specs = [
    ...code.matchAll(/\b(?:import|export)\s[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/g),
    ...code.matchAll(/\bimport\s*['"]([^'"]+)['"]/g),
    ...code.matchAll(/\bimport\s*\(\s*['"`]([^'"`]+)['"`]\s*\)/g),
  ];
  return specs.map((m) => m[1]!);
}

/** The repo-relative top directory a relative specifier lands in, or undefined for packages and node: builtins. */
function target(file: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined;
  return path.relative(REPO, path.resolve(REPO, path.dirname(file), spec));
}

t.test('the import scanner sees every form', async (t) => {
  t.same(importsOf(`import a from './a.js';\nimport type { B } from "../b.js";\nexport * from './c.js';\nexport { d } from './d.js';\nimport './e.js';\nconst f = await import('./f.js');\n// import g from './g.js'\n/* import('./h.js') */`), ['./a.js', '../b.js', './c.js', './d.js', './e.js', './f.js']);
});

t.test('cni/ imports nothing of control/ (or any other part of the repo)', async (t) => {
  const bad: string[] = [];
  for (const file of sources('cni')) {
    for (const spec of importsOf(fs.readFileSync(path.join(REPO, file), 'utf8'))) {
      const to = target(file, spec);
      if (to !== undefined && !to.startsWith(`cni${path.sep}`)) bad.push(`${file} -> ${spec}`);
    }
  }
  t.same(bad, [], 'the CNI protocol package depends on packages and itself only');
});

t.test('no product module imports lab/, test/ or bench/', async (t) => {
  const bad: string[] = [];
  for (const file of PRODUCT.flatMap(sources)) {
    for (const spec of importsOf(fs.readFileSync(path.join(REPO, file), 'utf8'))) {
      const to = target(file, spec);
      if (to !== undefined && /^(lab|test|bench)(\/|$)/.test(to)) bad.push(`${file} -> ${spec}`);
    }
  }
  t.same(bad, [], 'product modules stay out of lab/, test/ and bench/');
});

t.test('the runtime image ships no lab/, test/ or bench/', async (t) => {
  const dockerfile = fs.readFileSync(path.join(REPO, 'docker', 'Dockerfile'), 'utf8');
  const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  const copied = [...runtime.matchAll(/^COPY --from=build (.+) \S+$/gm)].flatMap((m) => m[1]!.split(/\s+/)).map((s) => s.replace(/^\/src\//, ''));
  t.ok(copied.length > 0, `COPY sources: ${copied.join(' ')}`);
  t.same(copied.filter((s) => s === 'dist' || s === '.' || /^(dist\/)?(lab|test|bench)(\/|$)/.test(s)), [], 'only the product parts of dist/ are copied');
  const install = fs.readFileSync(path.join(REPO, 'docker', 'install-cni-plugin.sh'), 'utf8');
  t.notMatch(install, /cp -a "\$src\/dist" /, 'install-cni-plugin.sh copies the product parts of dist/, not all of it');
});
