// The directory PolicySource: YAML and JSON files of NetworkPolicy,
// Namespace and Pod objects (several documents, Lists) become one snapshot;
// a change on disk reaches listeners through the watch; a file that does not
// parse keeps its last good content and is reported; one never read whole,
// and every object that cannot be read, fail closed (a broken policy that
// isolates what it may select); deleted files drop out.
import t, { type Test } from 'tap';
import { mkdtempSync, renameSync, rmSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DirectoryPolicySource, isPolicyFile, parsePolicyFile } from '../../control/policy/dir-source.js';
import type { PolicySnapshot } from '../../control/policy/types.js';
import { compilePolicies, type LocalEndpoint } from '../../control/policy/compile.js';

function tmpDir(t: Test): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `vnet-poldir-${process.pid}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function started(t: Test, dir: string, settleMs = 0): Promise<DirectoryPolicySource> {
  // No periodic rescan: the tests see the watch, not the poll.
  const src = new DirectoryPolicySource({ dir, debounceMs: 20, rescanMs: 0, settleMs });
  await src.start();
  t.teardown(() => src.stop());
  return src;
}

/** Resolves once `pred` holds on the snapshot, checked at each change notification. */
function until(src: DirectoryPolicySource, pred: (s: PolicySnapshot) => boolean): Promise<PolicySnapshot> {
  return new Promise((resolve) => {
    const check = (): boolean => {
      const s = src.snapshot();
      if (s && pred(s)) {
        off();
        resolve(s);
        return true;
      }
      return false;
    };
    const off = src.onChange(check);
    check();
  });
}

/** Write whole (temporary file, then rename), as the docs advise. */
function put(dir: string, name: string, text: string): void {
  const tmp = path.join(dir, `.${name}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, path.join(dir, name));
}

const POLICY_YAML = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-from-db
  namespace: shop
spec:
  podSelector:
    matchLabels: { app: web }
  ingress:
  - from:
    - podSelector: { matchLabels: { app: db } }
    ports:
    - port: http
---
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: { team: blue }
---
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  namespace: shop
  labels: { app: web }
spec:
  containers:
  - name: c
    ports:
    - { name: http, containerPort: 8080 }
    - { name: stats, containerPort: 9000, protocol: UDP }
`;

t.test('parse: multi-document YAML, JSON Lists, defaults (namespace default, protocol TCP)', async (t) => {
  const objs = parsePolicyFile(POLICY_YAML);
  t.same(objs.map((o) => o.kind), ['NetworkPolicy', 'Namespace', 'Pod']);
  t.same(objs[2]!.value, {
    namespace: 'shop',
    name: 'web-1',
    labels: { app: 'web' },
    ips: [],
    namedPorts: [
      { name: 'http', protocol: 'TCP', port: 8080 },
      { name: 'stats', protocol: 'UDP', port: 9000 },
    ],
  });
  const list = parsePolicyFile(JSON.stringify({
    apiVersion: 'v1',
    kind: 'List',
    items: [
      { kind: 'Pod', metadata: { name: 'remote', labels: { app: 'db' } }, status: { podIP: '10.9.0.4', podIPs: [{ ip: '10.9.0.4' }, { ip: 'fd00::4' }] } },
      { kind: 'NetworkPolicy', metadata: { name: 'deny' }, spec: { podSelector: {} } },
    ],
  }));
  t.same(list, [
    { kind: 'Pod', value: { namespace: 'default', name: 'remote', labels: { app: 'db' }, ips: [{ family: 'ipv4', address: '10.9.0.4' }], namedPorts: [] } },
    { kind: 'NetworkPolicy', value: { metadata: { name: 'deny', namespace: 'default' }, spec: { podSelector: {} } } },
  ]);
  t.throws(() => parsePolicyFile('kind: NetworkPolicy\nmetadata: {name: a\n'), /./, 'not YAML at all: the caller decides (see the source tests)');
  t.same(parsePolicyFile('---\n---\n'), []);
  t.same(['a.yaml', 'b.yml', 'c.JSON', '.a.yaml.tmp', 'a.yaml~', 'a.yaml.swp', 'README'].map(isPolicyFile), [true, true, true, false, false, false, false]);
});

t.test('start: the snapshot holds every file; an empty directory is an empty snapshot', async (t) => {
  const dir = tmpDir(t);
  const empty = await started(t, path.join(dir, 'created-if-missing'));
  t.same(empty.snapshot(), { policies: [], namespaces: [], pods: [] });
  put(dir, 'shop.yaml', POLICY_YAML);
  put(dir, 'other.json', JSON.stringify({ kind: 'Namespace', metadata: { name: 'other', labels: { a: 'b' } } }));
  const src = await started(t, dir);
  const s = src.snapshot()!;
  t.same(s.policies.map((p) => `${p.metadata.namespace}/${p.metadata.name}`), ['shop/web-from-db']);
  t.same(s.namespaces, [{ name: 'other', labels: { a: 'b' } }, { name: 'shop', labels: { team: 'blue' } }]);
  t.same(s.pods.map((p) => p.name), ['web-1']);
  t.same(src.problems(), []);
});

t.test('watch: add, change and delete reach the listeners', async (t) => {
  const dir = tmpDir(t);
  const src = await started(t, dir);
  put(dir, 'shop.yaml', POLICY_YAML);
  await until(src, (s) => s.policies.length === 1);
  put(dir, 'shop.yaml', POLICY_YAML.replace('team: blue', 'team: red'));
  const s = await until(src, (s) => s.namespaces[0]?.labels.team === 'red');
  t.same(s.policies.length, 1);
  unlinkSync(path.join(dir, 'shop.yaml'));
  await until(src, (s) => s.policies.length === 0 && s.pods.length === 0);
  t.pass('deleted file dropped');
});

t.test('a file still being written is not read until it has been quiet; then a bad one is reported and its last good content stays', async (t) => {
  const dir = tmpDir(t);
  put(dir, 'shop.yaml', POLICY_YAML);
  const file = path.join(dir, 'shop.yaml');
  const old = new Date(Date.now() - 300_000);
  utimesSync(file, old, old);
  const src = await started(t, dir, 60_000);
  t.same(src.snapshot()!.policies.length, 1);
  const policyBefore = JSON.stringify(src.snapshot()!.policies);
  let notified = 0;
  src.onChange(() => notified++);
  // Half-written, as `cat > file` leaves it for a moment: still valid YAML, and it would allow everything.
  const half = POLICY_YAML.slice(0, POLICY_YAML.indexOf('  - from:') + 10);
  t.same(parsePolicyFile(half)[0]!.value, { metadata: { name: 'web-from-db', namespace: 'shop' }, spec: { podSelector: { matchLabels: { app: 'web' } }, ingress: [{ from: null }] } });
  writeFileSync(file, half);
  await src.rescan();
  t.same(JSON.stringify(src.snapshot()!.policies), policyBefore, 'not read while it may still be written');
  t.same(notified, 0);
  // Quiet for long enough (mtime in the past), and broken: reported, last good content kept.
  writeFileSync(file, POLICY_YAML.replace('matchLabels: { app: db }', 'matchLabels: { app: db'));
  const past = new Date(Date.now() - 120_000);
  utimesSync(file, past, past);
  await src.rescan();
  t.same(JSON.stringify(src.snapshot()!.policies), policyBefore, 'the last good policy stays');
  t.same(src.problems().map((p) => p.policy), ['shop.yaml']);
  t.match(src.problems()[0]!.message, /last good content stays in force/);
  t.same(notified, 0, 'nothing changed for the listeners');
  // Fixed.
  writeFileSync(file, POLICY_YAML.replace('app: db', 'app: cache'));
  utimesSync(file, past, new Date(Date.now() - 100_000));
  await src.rescan();
  t.match(JSON.stringify(src.snapshot()!.policies), /cache/);
  t.same(src.problems(), []);
  t.same(notified, 1);
});

t.test('start waits for files still being written: the first snapshot never lacks one', async (t) => {
  const dir = tmpDir(t);
  put(dir, 'shop.yaml', POLICY_YAML);
  const src = await started(t, dir, 150);
  t.same(src.snapshot()!.policies.length, 1);
});

t.test('a changed file is read by itself once it has settled (no further event needed)', async (t) => {
  const dir = tmpDir(t);
  const src = await started(t, dir, 150);
  writeFileSync(path.join(dir, 'shop.yaml'), POLICY_YAML);
  await until(src, (s) => s.policies.length === 1);
  t.pass('read after settling');
});

t.test('the same object in two files: the later file (by name) wins, reported', async (t) => {
  const dir = tmpDir(t);
  put(dir, 'a.yaml', 'kind: Namespace\nmetadata: {name: n, labels: {v: "1"}}\n');
  put(dir, 'b.yaml', 'kind: Namespace\nmetadata: {name: n, labels: {v: "2"}}\n');
  const src = await started(t, dir);
  t.same(src.snapshot()!.namespaces, [{ name: 'n', labels: { v: '2' } }]);
  t.same(src.problems(), [{ policy: 'b.yaml', message: 'Namespace n is also in a.yaml; the one in b.yaml is used' }]);
});

t.test('an unchanged rescan does not notify', async (t) => {
  const dir = tmpDir(t);
  put(dir, 'shop.yaml', POLICY_YAML);
  const src = await started(t, dir);
  let notified = 0;
  src.onChange(() => notified++);
  put(dir, 'shop.yaml', POLICY_YAML + '\n# a comment\n');
  await src.rescan();
  t.same(notified, 0);
});

/** What `src`'s snapshot compiles to for these local endpoints: pod → [ingress isolated, egress isolated, rules]. */
function isolation(src: DirectoryPolicySource, eps: LocalEndpoint[]): Record<string, [boolean, boolean, number]> {
  const res = compilePolicies(src.snapshot()!, eps);
  return Object.fromEntries(res.endpoints.map((e) => [e.pod ?? e.address, [e.ingress.isolated, e.egress.isolated, e.ingress.rules.length + e.egress.rules.length]]));
}

const LOCALS: LocalEndpoint[] = [
  { family: 'ipv4', address: '10.0.0.10', namespace: 'shop', name: 'web-1' },
  { family: 'ipv4', address: '10.0.0.11', namespace: 'shop', name: 'db-1' },
  { family: 'ipv4', address: '10.0.0.12', namespace: 'other', name: 'x' },
  { family: 'ipv4', address: '10.0.0.13' }, // no pod names: never selected by any policy
];

t.test('objects that parse but cannot be read are broken policies over their namespace, never dropped', async (t) => {
  const objs = parsePolicyFile('kind: NetworkPolcy\nmetadata: {name: typo, namespace: shop}\nspec: {podSelector: {}}\n', 'f.yaml');
  t.same(objs, [{
    kind: 'Unreadable',
    value: {
      metadata: { name: 'typo', namespace: 'shop' }, spec: { podSelector: {} },
      unreadable: 'f.yaml: kind "NetworkPolcy" is not used by policy (NetworkPolicy, Namespace, Pod, or a List of them)',
    },
  }]);
  t.match(parsePolicyFile('kind: Pod\nmetadata: {}\n---\nkind: NetworkPolicy\nmetadata: {name: n}\n', 'f.yaml'), [
    { kind: 'Unreadable', value: { metadata: { name: 'f.yaml#1', namespace: 'default' }, unreadable: 'f.yaml#1: a Pod needs metadata.name' } },
    { kind: 'Unreadable', value: { metadata: { name: 'n', namespace: 'default' }, unreadable: 'f.yaml#2: NetworkPolicy default/n has no spec' } },
  ]);
  t.match(parsePolicyFile('- just\n- a list\n', 'f.yaml'), [
    { kind: 'Unreadable', value: { metadata: { name: 'f.yaml', namespace: '' }, unreadable: 'f.yaml is not a Kubernetes object (a map with kind)' } },
  ], 'not even a map: no namespace known');

  const dir = tmpDir(t);
  put(dir, 'shop.yaml', POLICY_YAML);
  // The same file with kind misspelt in the policy that meant to isolate web-1: it must not open it.
  put(dir, 'typo.yaml', 'kind: NetworkPolcy\nmetadata: {name: deny-all, namespace: shop}\nspec: {podSelector: {}}\n');
  const src = await started(t, dir);
  t.same(src.snapshot()!.policies.map((p) => `${p.metadata.namespace}/${p.metadata.name}`), ['shop/web-from-db', 'shop/deny-all']);
  t.same(isolation(src, LOCALS), {
    'shop/web-1': [true, true, 0], // the broken policy adds no rule; web-from-db's rule allows only db pods, none with labels here
    'shop/db-1': [true, true, 0],
    'other/x': [false, false, 0],
    '10.0.0.13': [false, false, 0],
  }, 'every pod of shop isolated both ways; other namespaces untouched');
  const res = compilePolicies(src.snapshot()!, LOCALS);
  t.match(res.problems, [{ policy: 'shop/deny-all', broken: true, message: /kind "NetworkPolcy".*the policy is broken: it isolates every pod in namespace shop both ways/ }]);
  t.same(res.stats.validPolicies, 1);
  t.same(res.stats.policies, 2);
});

t.test('a file that never parsed isolates every named pod of the node until it parses or goes; one that parsed once keeps its last good content', async (t) => {
  const dir = tmpDir(t);
  put(dir, 'shop.yaml', POLICY_YAML);
  put(dir, 'new.yaml', 'kind: NetworkPolicy\nmetadata: {name: a, namespace: other\n'); // cut short: not YAML
  const src = await started(t, dir);
  t.same(src.problems(), [], 'reported by the compiler, as a broken policy');
  const res = compilePolicies(src.snapshot()!, LOCALS);
  t.match(res.problems, [{ policy: '*/new.yaml', broken: true, message: /new\.yaml does not parse \(.*\) and no earlier content of it is known; the policy is broken: it isolates every pod in every namespace/ }]);
  t.same(isolation(src, LOCALS), {
    'shop/web-1': [true, true, 0],
    'shop/db-1': [true, true, 0],
    'other/x': [true, true, 0],
    '10.0.0.13': [false, false, 0],
  }, 'its namespace is unknown: every named pod isolated both ways (fail closed)');
  t.same(res.selectedBy.get('10.0.0.12'), ['*/new.yaml']);

  // Fixed: its real content applies, the node-wide isolation goes.
  put(dir, 'new.yaml', 'kind: NetworkPolicy\nmetadata: {name: a, namespace: other}\nspec: {podSelector: {}, policyTypes: [Egress]}\n');
  await until(src, (s) => s.policies.every((p) => p.unreadable === undefined));
  t.same(isolation(src, LOCALS), {
    'shop/web-1': [true, false, 0],
    'shop/db-1': [false, false, 0],
    'other/x': [false, true, 0],
    '10.0.0.13': [false, false, 0],
  });
  // Broken again after it parsed: its last good content stays (a save of a half-edited file does not cut the node off).
  put(dir, 'new.yaml', 'kind: NetworkPolicy\nmetadata: {name: a, namespace: other\n');
  await src.rescan();
  t.match(src.problems(), [{ policy: 'new.yaml', message: /last good content stays in force/ }]);
  t.same(isolation(src, LOCALS)['other/x'], [false, true, 0]);
  // Removed: nothing of it remains.
  unlinkSync(path.join(dir, 'new.yaml'));
  await until(src, (s) => s.policies.length === 1);
  t.same(isolation(src, LOCALS)['other/x'], [false, false, 0]);
});
