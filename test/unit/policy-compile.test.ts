// The compiler's edges: the exact compiled form (normalization, merges,
// order), malformed policies (each a problem, none stopping the valid ones,
// none opening traffic up), local pods without a Pod object, IPv6 blocks.
import t from 'tap';
import { compilePolicies, defaultDeny } from '../../control/policy/compile.js';
import { normalizePeers, normalizePorts } from '../../control/policy/normalize.js';
import { parseCidr4 } from '../../control/policy/cidr.js';
import type { NetworkPolicy, PolicySnapshot } from '../../control/policy/types.js';
import { compileModel, diff, expect, ipOf, np, truth } from './policy-fixtures.js';

const A = { podSelector: { matchLabels: { pod: 'a' } } };

t.test('the compiled form is normalized: same ports merged, peers sorted and deduped, sources listed', async (t) => {
  const p1 = np('x', 'p1', { ...A, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'c' } } }], ports: [{ port: 81 }, { port: 80 }] }] });
  const p2 = np('x', 'p2', { ...A, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }, { podSelector: { matchLabels: { pod: 'c' } } }], ports: [{ port: 80, endPort: 81 }] }] });
  const res = compileModel([p2, p1]);
  const xa = res.endpoints.find((e) => e.pod === 'x/a')!;
  t.same(xa, {
    family: 'ipv4',
    address: ipOf('x/a'),
    pod: 'x/a',
    ingress: {
      isolated: true,
      rules: [{
        peers: [
          { family: 'ipv4', cidr: `${ipOf('x/b')}/32`, except: [] },
          { family: 'ipv4', cidr: `${ipOf('x/c')}/32`, except: [] },
        ],
        ports: [{ protocol: 'TCP', port: 80, endPort: 81 }],
        sources: ['x/p1', 'x/p2'],
      }],
    },
    egress: { isolated: false, rules: [] },
  });
  t.same(res.selectedBy.get(ipOf('x/a')), ['x/p1', 'x/p2']);
  t.same(res.selectedBy.get(ipOf('x/b')), []);
});

t.test('the result does not depend on input order', async (t) => {
  const ps: NetworkPolicy[] = [
    np('x', 'a', { ...A, ingress: [{ from: [{ namespaceSelector: {} }], ports: [{ port: 'serve-80-tcp' }, { protocol: 'UDP', port: 53 }] }] }),
    np('x', 'b', { policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/16', except: ['10.0.2.0/24', '10.0.1.0/24'] } }] }] }),
    np('x', 'c', { ...A, ingress: [{ from: [{ podSelector: {} }] }] }),
  ];
  const one = compileModel(ps);
  const two = compileModel([...ps].reverse(), (s) => {
    s.pods.reverse();
    s.namespaces.reverse();
  });
  t.same(JSON.stringify(two.endpoints), JSON.stringify(one.endpoints));
});

t.test('peers: a covered peer is dropped, excepts sorted; an allow-all rule absorbs the rest', async (t) => {
  const c = (s: string) => parseCidr4(s)!;
  const out = normalizePeers([
    { cidr: c('10.0.1.10/32'), except: [] },
    { cidr: c('10.0.0.0/16'), except: [c('10.0.2.0/24'), c('10.0.1.0/24')] },
    { cidr: c('10.0.2.5/32'), except: [] },
    { cidr: c('10.0.3.0/24'), except: [] },
    { cidr: c('10.0.3.7/32'), except: [] },
    { cidr: c('10.9.0.0/24'), except: [c('10.9.0.0/24')].map((x) => ({ ...x, prefix: 25 })) },
  ]);
  t.same(
    out.map((p) => [p.cidr, p.except]),
    [
      [c('10.0.0.0/16'), [c('10.0.1.0/24'), c('10.0.2.0/24')]],
      [c('10.0.1.10/32'), []],
      [c('10.0.2.5/32'), []],
      [c('10.9.0.0/24'), [c('10.9.0.0/25')]],
    ],
    '10.0.3.0/24 and 10.0.3.7 are inside the /16 and not excepted; 10.0.1.10 and 10.0.2.5 are excepted there, so kept',
  );
  t.same(normalizePorts([
    { protocol: 'UDP', port: 53, endPort: 53 },
    { protocol: 'TCP', port: 82, endPort: 90 },
    { protocol: 'TCP', port: 80, endPort: 81 },
    { protocol: 'TCP', port: 85, endPort: 86 },
  ]), [{ protocol: 'TCP', port: 80, endPort: 90 }, { protocol: 'UDP', port: 53, endPort: 53 }]);

  const res = compileModel([
    np('x', 'narrow', { ...A, ingress: [{ from: [{ podSelector: {} }], ports: [{ port: 80 }] }] }),
    np('x', 'open', { ...A, ingress: [{}] }),
  ]);
  t.same(res.endpoints.find((e) => e.pod === 'x/a')!.ingress.rules, [{ peers: null, ports: null, sources: ['x/open'] }]);
});

t.test('malformed parts are problems; the valid policies and rules still apply; nothing opens up', async (t) => {
  const bad: NetworkPolicy[] = [
    np('x', 'bad-cidr', { ...A, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.300/8' } }] }, { from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] }),
    np('x', 'bad-proto', { ...A, ingress: [{ ports: [{ protocol: 'ICMP', port: 1 }] }] }),
    np('x', 'bad-range', { ...A, ingress: [{ ports: [{ port: 90, endPort: 80 }] }] }),
    np('x', 'named-endport', { ...A, ingress: [{ ports: [{ port: 'serve-80-tcp', endPort: 90 }] }] }),
    np('x', 'bad-except', { ...A, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/16', except: ['10.1.0.0/24'] } }] }] }),
    np('x', 'bad-peer', { ...A, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8' }, podSelector: {} }] }] }),
    np('x', 'empty-peer', { ...A, ingress: [{ from: [{}] }] }),
    np('x', 'bad-port-name', { ...A, ingress: [{ ports: [{ port: '80' }] }] }),
    np('x', 'bad-op', { ...A, ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: 'pod', operator: 'Like' as 'In', values: ['a'] }] } }] }] }),
    np('x', 'in-no-values', { ...A, ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: [] }] } }] }] }),
    np('y', 'bad-selector', { podSelector: { matchExpressions: [{ key: 'pod', operator: 'Exists', values: ['x'] }] } }),
    { metadata: { namespace: 'z' } } as unknown as NetworkPolicy,
  ];
  const res = compileModel(bad);
  t.same(res.problems.map((p) => p.policy), [
    'x/bad-cidr', 'x/bad-except', 'x/bad-op', 'x/bad-peer', 'x/bad-port-name', 'x/bad-proto', 'x/bad-range', 'x/empty-peer', 'x/in-no-values', 'x/named-endport', 'y/bad-selector', 'z/(unnamed)',
  ]);
  for (const p of res.problems) t.match(p.message, /\w/, `${p.policy}: ${p.message}`);
  t.match(res.problems.find((p) => p.policy === 'x/bad-cidr')!.message, /"10\.0\.0\.300\/8" is not a CIDR/);
  t.match(res.problems.find((p) => p.policy === 'x/bad-proto')!.message, /unknown protocol "ICMP"/);
  t.same(res.stats.validPolicies, 10);
  // x/a is isolated by the bad policies (fail closed) and gets bad-cidr's valid second rule: only x/b.
  // The two broken ones (a bad podSelector, no name or spec) isolate every pod of y and z both ways.
  const d = diff(truth(res, 'TCP', 80), expect((f, to) => (to === 'x/a' && f !== 'x/b') || /^[yz]\//.test(f) || /^[yz]\//.test(to)));
  t.same(d, { unexpectedlyAllowed: [], unexpectedlyDenied: [] });
});

t.test('an unknown policyTypes value isolates both directions', async (t) => {
  const res = compileModel([np('x', 'typo', { ...A, policyTypes: ['Ingres'] as string[] })]);
  t.match(res.problems, [{ policy: 'x/typo', message: /only Ingress and Egress/ }]);
  const xa = res.endpoints.find((e) => e.pod === 'x/a')!;
  t.same([xa.ingress.isolated, xa.egress.isolated], [true, true]);
});

t.test('IPv6 ipBlocks are valid and match nothing on an IPv4 node (the rule does not become allow-all)', async (t) => {
  const res = compileModel([np('x', 'v6', { ...A, ingress: [{ from: [{ ipBlock: { cidr: 'fd00::/8' } }] }] })]);
  t.same(res.problems, []);
  t.same(res.endpoints.find((e) => e.pod === 'x/a')!.ingress, { isolated: true, rules: [] });
});

t.test('non-canonical CIDRs are masked', async (t) => {
  const res = compileModel([np('x', 'mask', { ...A, ingress: [{ from: [{ ipBlock: { cidr: '10.0.2.77/24' } }] }] })]);
  t.same(res.endpoints.find((e) => e.pod === 'x/a')!.ingress.rules[0]!.peers, [{ family: 'ipv4', cidr: '10.0.2.0/24', except: [] }]);
});

t.test('a local pod without a Pod object has no labels and no named ports, but is in its namespace', async (t) => {
  const snap: PolicySnapshot = {
    namespaces: [],
    pods: [],
    policies: [
      np('web', 'all', { ingress: [{ from: [{ podSelector: { matchLabels: { app: 'db' } } }] }] }),
      np('web', 'labelled', { podSelector: { matchLabels: { app: 'web' } }, policyTypes: ['Egress'] }),
    ],
  };
  const res = compilePolicies(snap, [
    { family: 'ipv4', address: '10.1.0.5', namespace: 'web', name: 'w1' },
    { family: 'ipv4', address: '10.1.0.6' },
  ]);
  const [w1, anon] = res.endpoints;
  t.same(w1!.pod, 'web/w1');
  t.same(w1!.ingress, { isolated: true, rules: [] }, 'selected by the empty selector, no peer has app=db');
  t.same(w1!.egress.isolated, false, 'not labelled app=web');
  t.same(anon, { family: 'ipv4', address: '10.1.0.6', ingress: { isolated: false, rules: [] }, egress: { isolated: false, rules: [] } }, 'no pod identity: never selected');
});

t.test('a local pod is a peer by its endpoint address even when its Pod object has no IP', async (t) => {
  const snap: PolicySnapshot = {
    namespaces: [{ name: 'web', labels: {} }],
    pods: [
      { namespace: 'web', name: 'db', labels: { app: 'db' }, ips: [], namedPorts: [] },
      { namespace: 'web', name: 'w', labels: { app: 'web' }, ips: [], namedPorts: [] },
    ],
    policies: [np('web', 'w', { podSelector: { matchLabels: { app: 'web' } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: 'db' } } }] }] })],
  };
  const res = compilePolicies(snap, [
    { family: 'ipv4', address: '10.1.0.5', namespace: 'web', name: 'w' },
    { family: 'ipv4', address: '10.1.0.9', namespace: 'web', name: 'db' },
  ]);
  t.same(res.endpoints[0]!.ingress.rules[0]!.peers, [{ family: 'ipv4', cidr: '10.1.0.9/32', except: [] }]);
});

t.test('egress named port that no peer declares: one problem, allows nothing', async (t) => {
  const res = compileModel([np('x', 'nope', { ...A, policyTypes: ['Egress'], egress: [{ ports: [{ port: 'metrics' }] }] })]);
  t.same(res.problems, [{ policy: 'x/nope', message: 'named port "metrics"/TCP is not a container port of any peer pod: it allows nothing' }]);
  t.same(res.endpoints.find((e) => e.pod === 'x/a')!.egress, { isolated: true, rules: [] });
});

t.test('defaultDeny names the pod and isolates both ways', async (t) => {
  t.same(defaultDeny({ family: 'ipv4', address: '10.0.0.4', namespace: 'n', name: 'p' }), {
    family: 'ipv4',
    address: '10.0.0.4',
    pod: 'n/p',
    ingress: { isolated: true, rules: [] },
    egress: { isolated: true, rules: [] },
  });
});

t.test('stats count policies, selectors, rules and peers', async (t) => {
  const res = compileModel([
    np('x', 'p', { ...A, ingress: [{ from: [{ podSelector: {}, namespaceSelector: {} }] }] }),
    { metadata: { name: 'broken' } } as unknown as NetworkPolicy,
  ]);
  t.same(res.stats, { policies: 2, validPolicies: 1, selectors: 3, rules: 1, peers: 9 });
});
