// The conformance test's written-out truth tables (test/lab/helpers/netpol-cases.ts)
// against the compiler, with the lab's address layout: a table that is wrong
// here would fail in the lab for no dataplane reason. Two independent
// statements of the same semantics (the upstream-style expectations and the
// compiler) must agree on every cell, for every step of every case.
import t from 'tap';
import { compilePolicies } from '../../control/policy/compile.js';
import { policyAllows } from '../../control/policy/evaluate.js';
import { CASES, COLUMNS, EVERY_POD, MODEL, expected, mismatchTable, nsOf, podOf, probeKey, selectedCases, snapshotOf, type World } from '../lab/helpers/netpol-cases.js';

// As in the lab: pods alternate between vm1 (10.240.1.x) and vm2 (10.240.2.x).
const world: World = {
  subnet: '10.240.0.0/16',
  ip: (pod) => {
    const i = EVERY_POD.indexOf(pod);
    return `10.240.${(i % 2) + 1}.${4 + Math.floor(i / 2)}`;
  },
};

t.test('every step of every case: written-out table == compiled policy, cell by cell', async (t) => {
  for (const c of CASES) {
    for (const step of c.steps(world)) {
      const locals = EVERY_POD.map((p) => ({ family: 'ipv4' as const, address: world.ip(p), namespace: nsOf(p), name: podOf(p) }));
      const res = compilePolicies(snapshotOf(step, world), locals);
      t.same(res.problems, [], `${c.name} / ${step.what}: no problems`);
      const byIp = new Map(res.endpoints.map((e) => [e.address, e]));
      const wrong: string[] = [];
      for (const col of COLUMNS) {
        for (const from of MODEL) {
          for (const to of col.targets) {
            const src = byIp.get(world.ip(from))!;
            const dst = byIp.get(world.ip(to))!;
            const compiled =
              from === to ||
              (policyAllows(src, { direction: 'egress', remote: world.ip(to), protocol: col.proto, port: col.port }) &&
                policyAllows(dst, { direction: 'ingress', remote: world.ip(from), protocol: col.proto, port: col.port }));
            if (compiled !== expected(step, from, to, col.proto, col.port)) wrong.push(`${from}->${to} ${col.proto}/${col.port}: compiled ${compiled ? 'allows' : 'denies'}`);
          }
        }
      }
      t.same(wrong, [], `${c.name} / ${step.what}`);
    }
  }
});

t.test('the CI form is a bounded subset; the full form is every case', async (t) => {
  const ci = selectedCases(false);
  t.ok(ci.length > 0 && ci.length <= 5, `${ci.length} cases in CI`);
  t.equal(selectedCases(true).length, CASES.length);
  t.equal(new Set(CASES.map((c) => c.name)).size, CASES.length, 'case names are unique');
});

t.test('a mismatch prints the grid of the port it is on, with A/B where the verdict is wrong', async (t) => {
  const step = CASES.find((c) => c.name === 'default deny ingress (x)')!.steps(world)[1]!;
  const seen = new Map<string, boolean>();
  for (const col of COLUMNS) for (const from of MODEL) for (const to of col.targets) seen.set(probeKey(from, to, col.proto, col.port), expected(step, from, to, col.proto, col.port));
  t.same(mismatchTable(step, seen).count, 0, 'as expected: nothing to print');
  seen.set(probeKey('y/a', 'x/b', 'UDP', 81), true);
  seen.set(probeKey('z/c', 'z/a', 'UDP', 81), false);
  const table = mismatchTable(step, seen);
  t.equal(table.count, 2);
  const lines = table.text.split('\n');
  t.ok(lines.includes('UDP/81: 2 unexpected'));
  t.ok(lines.includes('from  x/a x/b x/c y/a y/b y/c z/a z/b z/c '), 'columns: to');
  t.ok(lines.includes('y/a   -   A   -   .   .   .   .   .   .   '), 'y/a -> x/b connected though x admits nothing');
  t.ok(lines.includes('z/c   -   -   -   .   .   .   B   .   .   '), 'z/c -> z/a blocked though nothing isolates z');
  t.notMatch(table.text, /TCP\/80/, 'ports without a mismatch are not printed');
});
