// The daemon's policy wiring over the in-memory node (test/unit/fakes): a
// real policy directory, NodePolicy, and Agents running the real verbs.
// ADD programs the endpoint's policy with the attach (no window); the engine
// then programs only what changes; a standalone ADD on a node that enforces
// policy starts default-deny; a DEL takes the pod out of other pods' peers;
// --disable-network-policy opens the endpoints up and clears the mark
// (daemon-startup.test.ts: without it, a daemon with no source keeps them).
import t, { type Test } from 'tap';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { pino } from 'pino';
import { FakeNode, netConf } from './fakes/fake-node.js';
import { APPLY_CHUNK, NodePolicy, disableNodePolicy } from '../../control/policy/node.js';
import type { EndpointPolicyUpdate } from '../../control/dataplane/types.js';
import type { CniCall } from '../../control/types.js';
import { hostVethName } from '../../control/netlink/veth.js';

const logger = pino({ level: 'silent' });

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
  ingress: [ { from: [ { podSelector: { matchLabels: { app: db } } } ] } ]
`;

function setup(t: Test, poolSize?: number) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `vnet-polnode-${process.pid}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const node = new FakeNode(poolSize);
  const calls = node.recordPolicyApplies();
  const call = (id: string): CniCall => ({
    containerId: id, ifName: 'eth0', netns: node.addNetns(`/var/run/netns/${id}`), args: { K8S_POD_NAME: id, K8S_POD_NAMESPACE: 'shop' }, config: netConf(),
  });
  const attached = (id: string) => node.dp.iptables.endpoints.get(hostVethName(id, 'eth0'));
  return { dir, node, calls, call, attached };
}

function put(dir: string, name: string, text: string): void {
  const tmp = path.join(dir, `.${name}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, path.join(dir, name));
}

async function settle(policy: NodePolicy): Promise<void> {
  await new Promise((r) => setImmediate(r));
  await policy.engine.idle();
}

t.test('ADD attaches with the policy; the engine then programs only what changes; DEL moves peers', async (t) => {
  const { dir, node, calls, call, attached } = setup(t);
  put(dir, 'shop.yaml', POLICY);
  const policy = new NodePolicy({ dir, logger, registry: new Registry() });
  const { agent } = node.agent({ policy: policy.engine });
  await policy.start(agent);
  t.teardown(() => policy.stop());
  t.ok(node.store.snapshot().policyEnforced, 'the node is marked as enforcing');

  await agent.add(call('web'));
  t.same(attached('web')!.policy!.ingress, { isolated: true, rules: [] }, 'web attached isolated: no db yet');
  t.same(attached('web')!.policy!.egress, { isolated: false, rules: [] });
  await settle(policy);
  t.same(calls, [], 'what ADD programmed is current: nothing more to apply');

  const dbCall = call('db');
  await agent.add(dbCall);
  t.same(attached('db')!.policy, { family: 'ipv4', address: '10.240.0.11', pod: 'shop/db', ingress: { isolated: false, rules: [] }, egress: { isolated: false, rules: [] } });
  await settle(policy);
  t.same(calls.map((c) => c.map((u) => u.hostVeth)), [[hostVethName('web', 'eth0')]], 'db became web\'s peer: web only');
  t.same(calls[0]![0]!.policy.ingress.rules[0]!.peers, [{ family: 'ipv4', cidr: '10.240.0.11/32', except: [] }]);
  calls.length = 0;

  await agent.del(dbCall);
  await settle(policy);
  t.same(calls.map((c) => c.map((u) => [u.hostVeth, u.policy.ingress.rules.length])), [[[hostVethName('web', 'eth0'), 0]]], 'db gone: web loses the peer');
  t.same(policy.engine.endpoints().map((e) => e.name), ['web']);
  t.match(policy.dump(), { source: `directory ${dir}`, status: { synced: true, pending: 0 } });
});

t.test('a standalone ADD on a node that enforces policy starts default-deny; policy off opens up', async (t) => {
  const { dir, node, calls, call, attached } = setup(t);
  const policy = new NodePolicy({ dir, logger, registry: new Registry() });
  const daemon = node.agent({ policy: policy.engine });
  await policy.start(daemon.agent);
  await daemon.agent.add(call('web'));
  t.same(attached('web')!.policy!.ingress.isolated, false, 'empty directory: open');
  await policy.stop();
  daemon.kill();

  // The daemon is down: the plugin runs the Agent itself, without an engine.
  const standalone = node.agent();
  await standalone.agent.add(call('late'));
  t.same(attached('late')!.policy, {
    family: 'ipv4', address: '10.240.0.11', pod: 'shop/late', ingress: { isolated: true, rules: [] }, egress: { isolated: true, rules: [] },
  }, 'default deny both ways until the daemon is back');

  // The daemon comes back with --disable-network-policy: every endpoint opens up, the mark goes.
  const next = node.agent();
  calls.length = 0;
  await disableNodePolicy(next.agent, logger);
  t.same(calls[0]!.map((u) => [u.hostVeth, u.policy.ingress.isolated, u.policy.egress.isolated]).sort(), [
    [hostVethName('late', 'eth0'), false, false],
    [hostVethName('web', 'eth0'), false, false],
  ]);
  t.notOk(node.store.snapshot().policyEnforced);
  await next.agent.add(call('after'));
  t.equal(attached('after')!.policy, undefined, 'no longer enforcing: no policy at ADD');
});

t.test("a policy compiled for an address's previous pod is never programmed onto the pod that reuses it", async (t) => {
  const { node, calls, call } = setup(t);
  const { agent } = node.agent();
  await agent.add(call('web'));
  const ip = Object.values(node.store.snapshot().endpoints)[0]!.ip;
  const deny = { isolated: true, rules: [] };
  const stale = await agent.applyPolicies([{ family: 'ipv4', address: ip, pod: 'shop/gone', ingress: deny, egress: deny }]);
  t.same(stale, [ip], "another pod's policy for this address is skipped");
  t.same(calls, [], 'nothing reached the dataplane');
  const own = await agent.applyPolicies([{ family: 'ipv4', address: ip, pod: 'shop/web', ingress: deny, egress: deny }]);
  t.same(own, [], "the pod's own policy is programmed");
  t.same(calls.map((c) => c.map((u) => u.hostVeth)), [[hostVethName('web', 'eth0')]]);
});

t.test('a change that moves many endpoints is programmed in chunks, each under its own node-lock hold', async (t) => {
  const { dir, node, calls, call } = setup(t, APPLY_CHUNK + 8);
  const policy = new NodePolicy({ dir, logger, registry: new Registry() });
  const { agent } = node.agent({ policy: policy.engine });
  await policy.start(agent);
  t.teardown(() => policy.stop());
  const pods = Array.from({ length: APPLY_CHUNK + 8 }, (_, i) => `p${i}`);
  for (const id of pods) await agent.add(call(id));
  await settle(policy);
  calls.length = 0;
  put(dir, 'deny.yaml', 'kind: NetworkPolicy\nmetadata: { name: deny, namespace: shop }\nspec: { podSelector: {} }\n');
  await waitForCalls(calls, pods.length);
  await settle(policy);
  t.same(calls.map((c) => c.length), [APPLY_CHUNK, 8], 'two holds of the lock, not one');
  t.same(calls.flat().map((u) => u.policy.ingress.isolated), pods.map(() => true), 'every endpoint isolated');
});

async function waitForCalls(calls: EndpointPolicyUpdate[][], n: number): Promise<void> {
  for (let i = 0; i < 2000 && calls.flat().length < n; i++) await new Promise((r) => setTimeout(r, 10));
}
