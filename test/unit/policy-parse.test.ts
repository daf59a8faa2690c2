// Validation fails closed: a policy the compiler cannot read is never dropped
// (that would open what it was written to close) but enforced as *broken*:
// the pods it may select are isolated both ways with no allow rule. Unknown
// fields are errors at the smallest enclosing part: a misspelt `from` must not
// read as "from everywhere", a misspelt `except` must not allow the range it
// meant to cut out, a misspelt `matchLabels` must not select everything.
import t from 'tap';
import { compileModel, diff, expect, np, nsOf, truth } from './policy-fixtures.js';
import { parsePolicy, ANY_NAMESPACE } from '../../control/policy/parse.js';
import type { NetworkPolicy, PolicyProblem } from '../../control/policy/types.js';

const A = { podSelector: { matchLabels: { pod: 'a' } } };
const none = { unexpectedlyAllowed: [], unexpectedlyDenied: [] };

/** `spec` with fields the API does not have (a test can only say so with a cast). */
const raw = (spec: Record<string, unknown>): NetworkPolicy['spec'] => spec as unknown as NetworkPolicy['spec'];

t.test('an unknown field in spec: broken, the pods of its podSelector isolated both ways, no rule', async (t) => {
  // `ingres`: the ingress rule the author wrote is not there; both directions closed for x/a.
  const res = compileModel([np('x', 'typo', raw({ ...A, ingres: [{ from: [{ podSelector: {} }] }] }))]);
  t.match(res.problems, [{ policy: 'x/typo', broken: true, message: /^spec: unknown field "ingres" .*the policy is broken: it isolates the pods its podSelector selects in namespace x both ways/ }]);
  const xa = res.endpoints.find((e) => e.pod === 'x/a')!;
  t.same([xa.ingress, xa.egress], [{ isolated: true, rules: [] }, { isolated: true, rules: [] }]);
  t.same(res.endpoints.find((e) => e.pod === 'x/b')!.ingress.isolated, false, 'other pods of x: not selected');
  t.same(res.stats.validPolicies, 0);
  t.same(res.selectedBy.get(xa.address), ['x/typo']);
});

t.test('a bad podSelector: broken over every pod of its namespace (it was dropped before: everything open)', async (t) => {
  const res = compileModel([
    np('y', 'bad-op', { podSelector: { matchExpressions: [{ key: 'pod', operator: 'Like' as 'In', values: ['a'] }] }, ingress: [{}] }),
    np('z', 'misspelt', raw({ podSelector: { matchLabel: { pod: 'a' } }, ingress: [{}] })),
  ]);
  t.match(res.problems, [
    { policy: 'y/bad-op', broken: true, message: /unknown operator "Like".*isolates every pod in namespace y both ways/ },
    { policy: 'z/misspelt', broken: true, message: /unknown field "matchLabel".*isolates every pod in namespace z both ways/ },
  ]);
  t.same(diff(truth(res, 'TCP', 80), expect((f, to) => nsOf(f) !== 'x' || nsOf(to) !== 'x')), none, 'only x talks, and only within x');
});

t.test('no namespace: broken in every namespace (its podSelector still narrows it)', async (t) => {
  const problems: PolicyProblem[] = [];
  const p = parsePolicy({ metadata: { name: 'lost' }, spec: { ...A, ingress: [{}] } } as unknown as NetworkPolicy, problems);
  t.match(p, { key: '*/lost', namespace: ANY_NAMESPACE, broken: true, ingress: true, egress: true, ingressRules: [], egressRules: [] });
  t.match(problems, [{ policy: '*/lost', broken: true, message: /metadata\.name and metadata\.namespace are required.*isolates the pods its podSelector selects in every namespace/ }]);
  const res = compileModel([{ metadata: { name: 'lost' }, spec: { ...A, ingress: [{}] } } as unknown as NetworkPolicy]);
  t.same(res.endpoints.filter((e) => e.ingress.isolated && e.egress.isolated).map((e) => e.pod), ['x/a', 'y/a', 'z/a']);
  // Missing spec too: every pod of every namespace.
  const all = compileModel([{ metadata: {} } as unknown as NetworkPolicy]);
  t.same(all.endpoints.filter((e) => !e.ingress.isolated || !e.egress.isolated), []);
});

t.test('unknown fields in a rule, peer, port or ipBlock: that rule is skipped (allows nothing), the rest stays', async (t) => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    // `fromm` would leave the rule without `from`: allow from everywhere.
    ['rule', { fromm: [{ podSelector: { matchLabels: { pod: 'b' } } }] }, /spec\.ingress\[0\]: unknown field "fromm" \(from, ports\)/],
    ['rule-direction', { to: [{ podSelector: {} }] }, /spec\.ingress\[0\]: unknown field "to"/],
    ['peer', { from: [{ podselector: { matchLabels: { pod: 'b' } } }] }, /from\[0\]: unknown field "podselector"/],
    ['port', { ports: [{ prot: 'UDP', port: 80 }] }, /ports\[0\]: unknown field "prot"/],
    // `excepts` would allow the range it meant to cut out.
    ['ipblock', { from: [{ ipBlock: { cidr: '10.0.0.0/8', excepts: ['10.0.1.0/24'] } }] }, /ipBlock: unknown field "excepts" \(cidr, except\)/],
    ['peer-selector', { from: [{ podSelector: { matchLabel: { pod: 'b' } } }] }, /podSelector: unknown field "matchLabel"/],
    ['expression', { from: [{ podSelector: { matchExpressions: [{ key: 'pod', operator: 'Exists', value: 'b' }] } }] }, /unknown field "value" \(key, operator, values\)/],
  ];
  for (const [name, rule, message] of cases) {
    // The bad rule, and a good one allowing x/c: only x/c reaches x/a.
    const res = compileModel([np('x', name, raw({ ...A, ingress: [rule, { from: [{ podSelector: { matchLabels: { pod: 'c' } } }] }] }))]);
    t.match(res.problems, [{ policy: `x/${name}`, message }], name);
    t.notOk(res.problems[0]!.broken, `${name}: not broken, the policy is read`);
    t.same(res.stats.validPolicies, 1);
    t.same(diff(truth(res, 'TCP', 80), expect((f, to) => to === 'x/a' && f !== 'x/c')), none, `${name}: the bad rule allows nothing`);
  }
});

t.test('the fields the API defines are all accepted (no false alarm on a complete policy)', async (t) => {
  const res = compileModel([np('x', 'full', {
    podSelector: { matchLabels: { pod: 'a' }, matchExpressions: [{ key: 'pod', operator: 'In', values: ['a'] }] },
    policyTypes: ['Ingress', 'Egress'],
    ingress: [{ from: [{ podSelector: {}, namespaceSelector: {} }, { ipBlock: { cidr: '10.0.0.0/8', except: ['10.9.0.0/16'] } }], ports: [{ protocol: 'TCP', port: 80, endPort: 81 }] }],
    egress: [{ to: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }], ports: [{ protocol: 'UDP', port: 'serve-80-udp' }] }],
  })]);
  t.same(res.problems, []);
  t.same(res.stats.validPolicies, 1);
});
