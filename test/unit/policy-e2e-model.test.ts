// The upstream Kubernetes netpol e2e cases (test/e2e/network/netpol), run
// against the compiler: for each case, the full 81-pair truth table (x, y, z ×
// a, b, c, self pairs included, as pure semantics) on the ports the case
// probes, read off the compiled EndpointPolicies with policyAllows on both ends.
import t, { type Test } from 'tap';
import { NAMESPACE_NAME_LABEL } from '../../control/policy/compile.js';
import type { L4Protocol, NetworkPolicy } from '../../control/policy/types.js';
import { compileModel, diff, expect, nameOf, np, nsOf, truth } from './policy-fixtures.js';

type Probe = [L4Protocol, number];

function check(
  t: Test,
  policies: NetworkPolicy[],
  cases: Array<{ probe: Probe; deny: (from: string, to: string) => boolean }>,
  tweak?: Parameters<typeof compileModel>[1],
): void {
  const res = compileModel(policies, tweak);
  t.same(res.problems, [], 'no problems');
  for (const { probe, deny } of cases) {
    const d = diff(truth(res, probe[0], probe[1]), expect(deny));
    t.same(d, { unexpectedlyAllowed: [], unexpectedlyDenied: [] }, `${probe[0]}/${probe[1]}`);
  }
}

const TCP80: Probe = ['TCP', 80];
const TCP81: Probe = ['TCP', 81];
const UDP80: Probe = ['UDP', 80];
const UDP81: Probe = ['UDP', 81];
const never = (): boolean => false;

t.test('no policy: everything reaches everything', async (t) => {
  check(t, [], [TCP80, TCP81, UDP80, UDP81].map((probe) => ({ probe, deny: never })));
});

t.test("default-deny-ingress in x: nothing reaches x, x reaches the rest", async (t) => {
  check(t, [np('x', 'deny-ingress', { ingress: [] })], [{ probe: TCP80, deny: (_f, to) => nsOf(to) === 'x' }]);
});

t.test("default-deny-all in x: nothing in or out of x", async (t) => {
  const p = np('x', 'deny-all', { policyTypes: ['Ingress', 'Egress'] });
  check(t, [p], [{ probe: TCP80, deny: (f, to) => nsOf(to) === 'x' || nsOf(f) === 'x' }]);
});

t.test('allow ingress from pods within the namespace by podSelector (x/a ← x/b only)', async (t) => {
  const p = np('x', 'x-a-allows-x-b', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] });
  check(t, [p], [{ probe: TCP80, deny: (f, to) => to === 'x/a' && f !== 'x/b' }]);
});

t.test('deny all ingress in x plus allow all to x/a (empty pod and namespace selectors)', async (t) => {
  const deny = np('x', 'deny-all', { ingress: [] });
  const allow = np('x', 'allow-all-to-a', {
    podSelector: { matchLabels: { pod: 'a' } },
    ingress: [{ from: [{ podSelector: {}, namespaceSelector: {} }] }],
  });
  check(t, [deny, allow], [{ probe: TCP80, deny: (_f, to) => nsOf(to) === 'x' && to !== 'x/a' }]);
});

t.test('allow ingress from pods in all namespaces (empty namespaceSelector)', async (t) => {
  const p = np('x', 'allow-from-another-ns', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: {} } }] }] });
  check(t, [p], [{ probe: TCP80, deny: never }]);
});

t.test('allow only from a different namespace by namespaceSelector (matchLabels and matchExpressions)', async (t) => {
  const byLabels = np('x', 'ns-y', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { [NAMESPACE_NAME_LABEL]: 'y' } } }] }] });
  const byExpr = np('x', 'ns-y', {
    podSelector: { matchLabels: { pod: 'a' } },
    ingress: [{ from: [{ namespaceSelector: { matchExpressions: [{ key: 'ns', operator: 'In', values: ['y'] }] } }] }],
  });
  for (const p of [byLabels, byExpr]) check(t, [p], [{ probe: TCP80, deny: (f, to) => to === 'x/a' && nsOf(f) !== 'y' }]);
});

t.test('podSelector with matchExpressions', async (t) => {
  const p = np('x', 'x-a-allows-x-b', {
    podSelector: { matchLabels: { pod: 'a' } },
    ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: ['b'] }] } }] }],
  });
  check(t, [p], [{ probe: TCP80, deny: (f, to) => to === 'x/a' && f !== 'x/b' }]);
});

t.test('podSelector OR namespaceSelector (two peers)', async (t) => {
  const p = np('x', 'or', {
    podSelector: { matchLabels: { pod: 'a' } },
    ingress: [{
      from: [
        { namespaceSelector: { matchExpressions: [{ key: NAMESPACE_NAME_LABEL, operator: 'NotIn', values: ['x'] }] } },
        { podSelector: { matchLabels: { pod: 'b' } } },
      ],
    }],
  });
  check(t, [p], [{ probe: TCP80, deny: (f, to) => to === 'x/a' && (f === 'x/a' || f === 'x/c') }]);
});

t.test('podSelector AND namespaceSelector (one peer)', async (t) => {
  const p = np('x', 'and', {
    podSelector: { matchLabels: { pod: 'a' } },
    ingress: [{
      from: [{
        namespaceSelector: { matchExpressions: [{ key: NAMESPACE_NAME_LABEL, operator: 'NotIn', values: ['x'] }] },
        podSelector: { matchLabels: { pod: 'b' } },
      }],
    }],
  });
  check(t, [p], [{ probe: TCP80, deny: (f, to) => to === 'x/a' && !(f === 'y/b' || f === 'z/b') }]);
});

t.test('multiple pod selectors and namespace selectors (pods b, c outside x)', async (t) => {
  const p = np('x', 'multi', {
    podSelector: { matchLabels: { pod: 'a' } },
    ingress: [{
      from: [{
        namespaceSelector: { matchExpressions: [{ key: NAMESPACE_NAME_LABEL, operator: 'NotIn', values: ['x'] }] },
        podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: ['b', 'c'] }] },
      }],
    }],
  });
  check(t, [p], [{ probe: TCP80, deny: (f, to) => to === 'x/a' && (nsOf(f) === 'x' || nameOf(f) === 'a') }]);
});

t.test('any of several pod selectors (pod=b OR pod=c)', async (t) => {
  const p = np('x', 'any', {
    podSelector: { matchLabels: { pod: 'a' } },
    ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }, { podSelector: { matchLabels: { pod: 'c' } } }] }],
  });
  check(t, [p], [{ probe: TCP80, deny: (f, to) => to === 'x/a' && !(f === 'x/b' || f === 'x/c') }]);
});

t.test('Exists and DoesNotExist', async (t) => {
  const exists = np('x', 'exists', {
    podSelector: { matchExpressions: [{ key: 'pod', operator: 'Exists' }] },
    ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: 'missing', operator: 'DoesNotExist' }, { key: 'pod', operator: 'NotIn', values: ['a'] }] } }] }],
  });
  check(t, [exists], [{ probe: TCP80, deny: (f, to) => nsOf(to) === 'x' && !(nsOf(f) === 'x' && nameOf(f) !== 'a') }]);
});

t.test('ingress on a single port (81): port 80 denied, 81 allowed from y', async (t) => {
  const p = np('x', 'port-81', {
    podSelector: { matchLabels: { pod: 'a' } },
    ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }], ports: [{ port: 81, protocol: 'TCP' }] }],
  });
  check(t, [p], [
    { probe: TCP80, deny: (_f, to) => to === 'x/a' },
    { probe: TCP81, deny: (f, to) => to === 'x/a' && nsOf(f) !== 'y' },
    { probe: UDP81, deny: (_f, to) => to === 'x/a' },
  ]);
});

t.test('ingress from y on 80 OR from z on 81 (two rules)', async (t) => {
  const p = np('x', 'two-rules', {
    podSelector: { matchLabels: { pod: 'a' } },
    ingress: [
      { from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }], ports: [{ port: 80 }] },
      { from: [{ namespaceSelector: { matchLabels: { ns: 'z' } } }], ports: [{ port: 81 }] },
    ],
  });
  check(t, [p], [
    { probe: TCP80, deny: (f, to) => to === 'x/a' && nsOf(f) !== 'y' },
    { probe: TCP81, deny: (f, to) => to === 'x/a' && nsOf(f) !== 'z' },
  ]);
});

t.test('named ports on ingress: serve-80-tcp resolves on the local pod; serve-80-udp is UDP only', async (t) => {
  const p = np('x', 'named', {
    podSelector: { matchLabels: { pod: 'a' } },
    ingress: [{ ports: [{ port: 'serve-80-tcp', protocol: 'TCP' }, { port: 'serve-81-udp', protocol: 'UDP' }] }],
  });
  check(t, [p], [
    { probe: TCP80, deny: never },
    { probe: TCP81, deny: (_f, to) => to === 'x/a' },
    { probe: UDP80, deny: (_f, to) => to === 'x/a' },
    { probe: UDP81, deny: never },
  ]);
});

t.test('named port on ingress that the pod does not declare: allows nothing, reported', async (t) => {
  const p = np('x', 'named-missing', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ ports: [{ port: 'serve-9-tcp' }] }] });
  const res = compileModel([p]);
  t.match(res.problems, [{ policy: 'x/named-missing', message: /"serve-9-tcp"\/TCP is not a container port of pod x\/a/ }]);
  const d = diff(truth(res, 'TCP', 80), expect((_f, to) => to === 'x/a'));
  t.same(d, { unexpectedlyAllowed: [], unexpectedlyDenied: [] });
});

t.test('named ports on egress resolve on each peer pod (a rule splits per peer)', async (t) => {
  // x/a may send to serve-81-tcp of pods in y; x/a → y/b:81 allowed, :80 denied.
  const p = np('x', 'egress-named', {
    podSelector: { matchLabels: { pod: 'a' } },
    policyTypes: ['Egress'],
    egress: [{ to: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }], ports: [{ port: 'serve-81-tcp' }] }],
  });
  // One pod gets a different number for the same name: its rule must differ.
  check(
    t,
    [p],
    [
      { probe: TCP80, deny: (f, to) => f === 'x/a' && to !== 'y/c' },
      { probe: TCP81, deny: (f, to) => f === 'x/a' && (nsOf(to) !== 'y' || to === 'y/c') },
    ],
    (snap) => {
      const yc = snap.pods.find((p) => p.namespace === 'y' && p.name === 'c')!;
      yc.namedPorts = yc.namedPorts.map((np) => (np.name === 'serve-81-tcp' ? { ...np, port: 80 } : np));
    },
  );
});

t.test('endPort: TCP 80-81 allowed, UDP not', async (t) => {
  const p = np('x', 'range', {
    podSelector: { matchLabels: { pod: 'a' } },
    ingress: [{ ports: [{ protocol: 'TCP', port: 80, endPort: 81 }] }],
  });
  check(t, [p], [
    { probe: TCP80, deny: never },
    { probe: TCP81, deny: never },
    { probe: UDP80, deny: (_f, to) => to === 'x/a' },
  ]);
});

t.test('ipBlock with except: allow from 10.0.0.0/8 except z', async (t) => {
  const p = np('x', 'cidr', {
    podSelector: { matchLabels: { pod: 'a' } },
    ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['10.0.3.0/24'] } }] }],
  });
  check(t, [p], [{ probe: TCP80, deny: (f, to) => to === 'x/a' && nsOf(f) === 'z' }]);
});

t.test('egress ipBlock to one pod only, except form', async (t) => {
  const p = np('x', 'egress-cidr', {
    podSelector: { matchLabels: { pod: 'a' } },
    egress: [{ to: [{ ipBlock: { cidr: '10.0.2.0/24', except: ['10.0.2.11/32'] } }] }],
  });
  // policyTypes absent + egress rules: isolates both directions; ingress has no rules.
  check(t, [p], [{ probe: TCP80, deny: (f, to) => to === 'x/a' || (f === 'x/a' && !(nsOf(to) === 'y' && to !== 'y/b')) }]);
});

t.test('policyTypes Egress only: ingress rules in the spec are ignored, ingress stays open', async (t) => {
  const p = np('x', 'egress-only', {
    podSelector: { matchLabels: { pod: 'a' } },
    policyTypes: ['Egress'],
    ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'nobody' } } }] }],
    egress: [{ to: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }] }],
  });
  check(t, [p], [{ probe: TCP80, deny: (f, to) => f === 'x/a' && nsOf(to) !== 'y' }]);
});

t.test('policyTypes absent, no egress rules: ingress only', async (t) => {
  const p = np('x', 'ingress-default', { podSelector: { matchLabels: { pod: 'a' } }, egress: [] });
  check(t, [p], [{ probe: TCP80, deny: (_f, to) => to === 'x/a' }]);
});

t.test('deny egress except to DNS (UDP 53 to anywhere)', async (t) => {
  const p = np('x', 'dns-only', { policyTypes: ['Egress'], egress: [{ ports: [{ protocol: 'UDP', port: 53 }] }] });
  const res = compileModel([p]);
  const xa = res.endpoints.find((e) => e.pod === 'x/a')!;
  t.same(xa.egress, { isolated: true, rules: [{ peers: null, ports: [{ protocol: 'UDP', port: 53, endPort: 53 }], sources: ['x/dns-only'] }] });
  check(t, [p], [{ probe: TCP80, deny: (f) => nsOf(f) === 'x' }, { probe: UDP80, deny: (f) => nsOf(f) === 'x' }]);
});

t.test('multiple policies are a union', async (t) => {
  const a = np('x', 'from-b', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] });
  const b = np('x', 'from-c', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'c' } } }] }] });
  check(t, [a, b], [{ probe: TCP80, deny: (f, to) => to === 'x/a' && f !== 'x/b' && f !== 'x/c' }]);
});

t.test('a policy of another namespace does not select pods here', async (t) => {
  const p = np('y', 'deny-a', { podSelector: { matchLabels: { pod: 'a' } } });
  check(t, [p], [{ probe: TCP80, deny: (_f, to) => to === 'y/a' }]);
});

t.test('a pod label change moves the pod in and out of selections', async (t) => {
  const p = np('x', 'from-b', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] });
  // x/c relabelled pod=b: now allowed; x/a relabelled: no longer selected.
  check(t, [p], [{ probe: TCP80, deny: (f, to) => to === 'x/a' && f !== 'x/b' && f !== 'x/c' }], (s) => {
    s.pods.find((p) => p.namespace === 'x' && p.name === 'c')!.labels = { pod: 'b' };
  });
  check(t, [p], [{ probe: TCP80, deny: never }], (s) => {
    s.pods.find((p) => p.namespace === 'x' && p.name === 'a')!.labels = { pod: 'a2' };
  });
});

t.test('a namespace label change moves its pods in and out of peers', async (t) => {
  const p = np('x', 'from-team', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'blue' } } }] }] });
  check(t, [p], [{ probe: TCP80, deny: (_f, to) => to === 'x/a' }]);
  check(t, [p], [{ probe: TCP80, deny: (f, to) => to === 'x/a' && nsOf(f) !== 'z' }], (s) => {
    s.namespaces.find((n) => n.name === 'z')!.labels = { team: 'blue' };
  });
});

t.test('SCTP is its own protocol', async (t) => {
  const p = np('x', 'sctp', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ ports: [{ protocol: 'SCTP', port: 80 }] }] });
  check(t, [p], [
    { probe: ['SCTP', 80], deny: never },
    { probe: TCP80, deny: (_f, to) => to === 'x/a' },
  ]);
});

t.test('egress deny all but allow to x/b: replies are the dataplane\'s job, the table is one-way', async (t) => {
  const p = np('x', 'a-to-b', {
    podSelector: { matchLabels: { pod: 'a' } },
    policyTypes: ['Egress'],
    egress: [{ to: [{ podSelector: { matchLabels: { pod: 'b' } } }] }],
  });
  check(t, [p], [{ probe: UDP81, deny: (f, to) => f === 'x/a' && to !== 'x/b' }]);
});
