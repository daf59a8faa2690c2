// `vnetctl debug policy [pod]`: argument parsing, the view from a daemon
// DUMP (filtered by pod name or address), the text a user reads, and what it
// says without a daemon; the daemon's policy flags.
import t from 'tap';
import { parseDebugArgs } from '../../control/debug/cli.js';
import { collectPolicy, renderPolicy, type PolicyDump } from '../../control/debug/views/policy.js';
import { parseDaemonArgs } from '../../control/daemon/main.js';
import type { NodeState } from '../../control/store/node-store.js';
import { PolicyEngine } from '../../control/policy/engine.js';
import type { PolicySnapshot, PolicySource } from '../../control/policy/types.js';
import { np } from './policy-fixtures.js';

t.test('debug policy takes an optional pod; other views still take none', async (t) => {
  t.match(parseDebugArgs(['policy']), { view: 'policy' });
  t.match(parseDebugArgs(['policy', 'shop/web']), { view: 'policy', arg: 'shop/web' });
  t.throws(() => parseDebugArgs(['policy', 'a', 'b']), /one view and one argument/);
  t.throws(() => parseDebugArgs(['pool', 'x']), /takes one view; got pool x/);
});

t.test('daemon flags: --policy-dir, --network-policy, --disable-network-policy', async (t) => {
  t.match(parseDaemonArgs(['--policy-dir', '/etc/vnet-cni/policy']), { 'policy-dir': '/etc/vnet-cni/policy', 'network-policy': false });
  t.match(parseDaemonArgs(['--network-policy']), { 'network-policy': true });
  t.match(parseDaemonArgs([]), { 'disable-network-policy': false });
  t.match(parseDaemonArgs(['--disable-network-policy']), { 'disable-network-policy': true });
});

async function dumpOf(): Promise<PolicyDump> {
  const snap: PolicySnapshot = {
    namespaces: [],
    pods: [
      { namespace: 'shop', name: 'web', labels: { app: 'web' }, ips: [], namedPorts: [] },
      { namespace: 'shop', name: 'db', labels: { app: 'db' }, ips: [], namedPorts: [] },
    ],
    policies: [
      np('shop', 'web-from-db', { podSelector: { matchLabels: { app: 'web' } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: 'db' } } }], ports: [{ port: 5432 }, { protocol: 'UDP' }] }] }),
      np('shop', 'bad', { ingress: [{ ports: [{ protocol: 'ICMP' }] }] }),
    ],
  };
  const source: PolicySource = { snapshot: () => snap, onChange: () => () => {}, start: async () => {}, stop: async () => {} };
  const engine = new PolicyEngine({ source, apply: async () => {} });
  await engine.start();
  engine.addEndpoint({ family: 'ipv4', address: '10.0.0.5', namespace: 'shop', name: 'web' });
  engine.addEndpoint({ family: 'ipv4', address: '10.0.0.6', namespace: 'shop', name: 'db' });
  await engine.idle();
  return { status: engine.status(), source: 'directory /etc/vnet-cni/policy', endpoints: engine.view() };
}

t.test('the view: state, problems, and per pod the selecting policies and rules', async (t) => {
  const dump = await dumpOf();
  const state = { version: 1, endpoints: {}, policy: dump } as unknown as NodeState;
  const one = collectPolicy(state, true, 'shop/web');
  t.same(one.dump!.endpoints.map((e) => e.endpoint.address), ['10.0.0.5']);
  t.same(collectPolicy(state, true, '10.0.0.6').dump!.endpoints.map((e) => e.endpoint.name), ['db']);
  const text = renderPolicy(one);
  t.match(text, /^policy: source directory \/etc\/vnet-cni\/policy, synced, 2\/2 policies, 1 rules, 1 peers, 3 selectors, pending 0/);
  t.match(text, /problem: shop\/bad: spec.ingress\[0\].ports\[0\]: unknown protocol "ICMP"/);
  t.match(text, /shop\/web 10\.0\.0\.5\n {2}selected by: shop\/bad, shop\/web-from-db\n {2}ingress:\n {4}allow TCP\/5432 UDP\/any peers 10\.0\.0\.6\/32 {3}\[shop\/web-from-db\]\n {2}egress: not isolated \(all allowed\)\n/);
  t.match(renderPolicy(collectPolicy(state, true, 'shop/db')), /shop\/db 10\.0\.0\.6\n {2}selected by: shop\/bad\n {2}ingress: deny all\n/);
});

t.test('without policy: says why', async (t) => {
  const plain = { version: 1, endpoints: {} } as unknown as NodeState;
  t.same(renderPolicy(collectPolicy(plain, true)), 'policy: off (the daemon runs without --policy-dir or --network-policy)\n');
  t.match(renderPolicy(collectPolicy({ ...plain, policyEnforced: { since: 'x' } }, false)), /no daemon answered; this node enforces policy \(new endpoints start default-deny/);
});
