// The daemon's policy wiring without a kernel: a real NodeStore and Agent
// with a recording dataplane, a real policy directory. Start marks the node as
// enforcing and programs every ready endpoint (the reconcile); a file change
// programs only the endpoints it changes; endpoints being deleted are
// skipped; a daemon started without policy opens the endpoints up and
// clears the mark.
import t, { type Test } from 'tap';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { pino } from 'pino';
import { Agent } from '../../control/agent/agent.js';
import { NodeStore, type EndpointRecord } from '../../control/store/node-store.js';
import { NodePolicy, disableNodePolicy } from '../../control/policy/node.js';
import type { Dataplane, EndpointPolicyUpdate } from '../../control/dataplane/types.js';

const logger = pino({ level: 'silent' });

function rec(name: string, ip: string, phase: EndpointRecord['phase'] = 'ready'): EndpointRecord {
  return {
    containerId: name, ifName: 'eth0', netns: '/proc/1/ns/net', ip, prefixLength: 24, gateway: '10.0.0.1',
    hostVeth: `veth-${name}`, hostMac: '02:00:00:00:00:01', podMac: '02:00:00:00:00:02', mtu: 1500,
    mode: 'ebpf', phase, network: 'azure', podName: name, podNamespace: 'shop', createdAt: new Date(0).toISOString(),
  };
}

async function setup(t: Test) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `vnet-polnode-${process.pid}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const stateDir = path.join(dir, 'state');
  const policyDir = path.join(dir, 'policy');
  const store = new NodeStore(stateDir, 5_000);
  await store.transaction((s) => {
    s.node = { mode: 'ebpf', network: { nic: 'eth0', nicMac: '', primaryIp: '10.0.0.4', prefixLength: 24, subnet: '10.0.0.0/24', gateway: '10.0.0.1', noSnatCidrs: [], mtu: 1500, bridge: 'azure0', bpfRoot: '/sys/fs/bpf/x' } };
    s.endpoints['web/eth0'] = rec('web', '10.0.0.5');
    s.endpoints['db/eth0'] = rec('db', '10.0.0.6');
    s.endpoints['gone/eth0'] = rec('gone', '10.0.0.7', 'deleting');
  });
  const calls: EndpointPolicyUpdate[][] = [];
  const dp = { mode: 'ebpf', applyPolicies: async (_n: unknown, u: EndpointPolicyUpdate[]) => void calls.push(u) } as unknown as Dataplane;
  return { store, policyDir, calls, dataplaneFor: async () => dp };
}

function put(dir: string, name: string, text: string): void {
  const tmp = path.join(dir, `.${name}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, path.join(dir, name));
}

const POLICY = `
kind: Pod
metadata: { name: web, namespace: shop, labels: { app: web } }
---
kind: Pod
metadata: { name: db, namespace: shop, labels: { app: db } }
---
kind: NetworkPolicy
metadata: { name: web-from-db, namespace: shop }
spec:
  podSelector: { matchLabels: { app: web } }
  ingress: [ { from: [ { podSelector: { matchLabels: { app: FROM } } } ] } ]
`;

t.test('start programs every ready endpoint; a change programs only what it changes', async (t) => {
  const { store, policyDir, calls, dataplaneFor } = await setup(t);
  const policy = new NodePolicy({ dir: policyDir, logger, registry: new Registry() });
  const agent = new Agent(store, { logger, dataplaneFor, policy: policy.engine });
  await policy.start(agent);
  t.teardown(() => policy.stop());
  t.ok((await store.peek()).policyEnforced, 'the node is marked as enforcing');
  t.same(calls.length, 1);
  t.same(calls[0]!.map((u) => [u.hostVeth, u.policy.ingress.isolated]).sort(), [['veth-db', false], ['veth-web', false]], 'empty directory: open, but programmed (reconcile)');
  calls.length = 0;
  put(policyDir, 'shop.yaml', POLICY.replace('FROM', 'db'));
  while (calls.length === 0) await new Promise((r) => setTimeout(r, 10));
  await policy.engine.idle();
  t.same(calls.map((c) => c.map((u) => u.hostVeth)), [['veth-web']]);
  t.same(calls[0]![0]!.policy.ingress.rules[0]!.peers, [{ family: 'ipv4', cidr: '10.0.0.6/32', except: [] }]);
  t.same(policy.engine.policyFor({ family: 'ipv4', address: '10.0.0.9', namespace: 'shop', name: 'web' }).ingress.isolated, true, 'a new web replica starts with its rules');
  t.match(policy.dump(), { source: `directory ${policyDir}`, status: { synced: true, pending: 0 } });
});

t.test('applyPolicies skips endpoints that are not ready; a daemon without policy opens up and clears the mark', async (t) => {
  const { store, calls, dataplaneFor } = await setup(t);
  const agent = new Agent(store, { logger, dataplaneFor });
  const deny = (address: string) => ({ family: 'ipv4' as const, address, ingress: { isolated: true, rules: [] }, egress: { isolated: true, rules: [] } });
  t.same(await agent.applyPolicies([deny('10.0.0.5'), deny('10.0.0.7'), deny('10.0.0.99')]), ['10.0.0.7', '10.0.0.99']);
  t.same(calls.map((c) => c.map((u) => u.hostVeth)), [['veth-web']]);
  calls.length = 0;
  await agent.setPolicyEnforced(true);
  await disableNodePolicy(agent, logger);
  t.same(calls[0]!.map((u) => [u.hostVeth, u.policy.ingress.isolated, u.policy.egress.isolated]).sort(), [['veth-db', false, false], ['veth-web', false, false]]);
  t.notOk((await store.peek()).policyEnforced);
  calls.length = 0;
  await disableNodePolicy(agent, logger);
  t.same(calls, [], 'not marked: nothing to do');
});
