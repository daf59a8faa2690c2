// The daemon's start over the in-memory node (test/unit/fakes): reconcile
// first, then policy over the endpoints that survived it; and turning policy
// off is an explicit act. A daemon started without a policy source on a node
// that enforces policy keeps every endpoint's rules, starts new endpoints
// default-deny, logs which flag to pass, and reports the hold in STATUS, the
// metrics and `vnetctl debug policy`; only --disable-network-policy opens up.
import t, { type Test } from 'tap';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { pino } from 'pino';
import { FakeNode, netConf } from './fakes/fake-node.js';
import { NodePolicy } from '../../control/policy/node.js';
import { startNode } from '../../control/daemon/startup.js';
import { servedAgent } from '../../control/daemon/served.js';
import { collectPolicy, renderPolicy } from '../../control/debug/views/policy.js';
import { NotReadyError } from '../../control/errors.js';
import type { CniCall } from '../../control/types.js';
import type { NodeState } from '../../control/store/node-store.js';
import type { Logger } from '../../control/log.js';
import { hostVethName } from '../../control/netlink/veth.js';

const ISOLATE_WEB = `
kind: Pod
metadata: { name: web, namespace: shop, labels: { app: web } }
---
kind: NetworkPolicy
metadata: { name: web-isolated, namespace: shop }
spec: { podSelector: { matchLabels: { app: web } }, policyTypes: [Ingress, Egress] }
`;
const DENY = { isolated: true, rules: [] };

function setup(t: Test) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `vnet-startup-${process.pid}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const node = new FakeNode();
  const calls = node.recordPolicyApplies();
  const call = (id: string): CniCall => ({
    containerId: id, ifName: 'eth0', netns: node.addNetns(`/var/run/netns/${id}`), args: { K8S_POD_NAME: id, K8S_POD_NAMESPACE: 'shop' }, config: netConf(),
  });
  const attached = (id: string) => node.dp.iptables.endpoints.get(hostVethName(id, 'eth0'));
  const applied = (): Array<[string, boolean, boolean]> => calls.flat().map((u) => [u.hostVeth, u.policy.ingress.isolated, u.policy.egress.isolated]);
  return { dir, node, calls, call, attached, applied };
}

function put(dir: string, name: string, text: string): void {
  const tmp = path.join(dir, `.${name}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, path.join(dir, name));
}

/** A node where a daemon with --policy-dir ran, added `ids`, and went away. */
async function enforcingNode(t: Test, ids: string[], policyText = ISOLATE_WEB) {
  const s = setup(t);
  put(s.dir, 'shop.yaml', policyText);
  const policy = new NodePolicy({ dir: s.dir, logger: pino({ level: 'silent' }), registry: new Registry() });
  const daemon = s.node.agent({ policy: policy.engine });
  await startNode(daemon.agent, { policy, logger: pino({ level: 'silent' }), registry: new Registry() });
  for (const id of ids) await daemon.agent.add(s.call(id));
  await policy.engine.idle();
  await policy.stop();
  daemon.kill();
  s.calls.length = 0;
  return s;
}

/** A pino logger that keeps what it logs. */
function recordingLogger(): { logger: Logger; lines: Array<{ level: number; msg: string }> } {
  const lines: Array<{ level: number; msg: string }> = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as { level: number; msg: string }) }) as unknown as Logger;
  return { logger, lines };
}

t.test('start reconciles first: policy never programs an endpoint that reconcile removes, and covers the rebuilt ones', async (t) => {
  const { dir, node, call, attached, applied } = await enforcingNode(t, ['web', 'gone'], '');
  t.ok(attached('gone'), 'gone is attached before the restart');
  // While the daemon is down, one pod dies (its sandbox goes) and web's endpoint is damaged.
  node.removeNetns(call('gone').netns);
  node.dp.iptables.endpoints.delete(hostVethName('web', 'eth0')); // its dataplane attachment lost
  put(dir, 'shop.yaml', ISOLATE_WEB);

  const policy = new NodePolicy({ dir, logger: pino({ level: 'silent' }), registry: new Registry() });
  const { agent } = node.agent({ policy: policy.engine });
  const started = await startNode(agent, { policy, logger: pino({ level: 'silent' }), registry: new Registry() });
  t.teardown(() => policy.stop());
  await policy.engine.idle();
  t.match(started.reconcile, { removed: ['gone/eth0'], rebuilt: ['web/eth0'] });
  t.same(applied().filter(([veth]) => veth === hostVethName('gone', 'eth0')), [], "the dead pod's endpoint never got policy");
  t.same(policy.engine.endpoints().map((e) => e.name), ['web'], 'the engine tracks the reconciled set');
  t.same([attached('web')!.policy!.ingress, attached('web')!.policy!.egress], [DENY, DENY], 'rebuilt before the engine synced: default deny, never open');
  t.same(applied(), [[hostVethName('web', 'eth0'), true, true]], 'then the first sync programs the surviving endpoint');
  t.same(policy.engine.status().pending, 0);
});

t.test('no policy source on an enforcing node: the rules stay, new pods start default-deny, and the hold is reported everywhere', async (t) => {
  const { node, call, attached, applied } = await enforcingNode(t, ['web']);
  t.same([attached('web')!.policy!.ingress.isolated, attached('web')!.policy!.egress.isolated], [true, true]);
  const since = node.store.snapshot().policyEnforced!.since;

  // The unit file lost its --policy-dir: the daemon starts with no policy flag.
  const { logger, lines } = recordingLogger();
  const registry = new Registry();
  const { agent } = node.agent();
  const started = await startNode(agent, { logger, registry });
  t.same(applied(), [], 'nothing reprogrammed: no endpoint opened');
  t.ok(node.store.snapshot().policyEnforced, 'the node stays marked as enforcing');
  t.match(started.policyHold, { since, message: /enforces NetworkPolicy .*without --policy-dir or --network-policy.*--disable-network-policy to turn policy off/ });
  t.match(lines, [{ level: 50, msg: /without --policy-dir or --network-policy.*--disable-network-policy/ }], 'logged as an error naming the flag');

  await agent.add(call('late'));
  t.same([attached('late')!.policy!.ingress, attached('late')!.policy!.egress], [DENY, DENY], 'an ADD through this daemon starts default-deny');

  const served = servedAgent(agent, { policyHold: started.policyHold! });
  await t.rejects(served.status(netConf()), NotReadyError, 'STATUS: not ready');
  await t.rejects(served.status(netConf()), { message: /--disable-network-policy/ });
  await t.resolves(agent.status(netConf()), 'the node itself is fine');
  t.match(await registry.metrics(), /\nvnet_cni_policy_held 1\n/);
  const dump = (await served.dump()) as unknown as NodeState;
  t.match(renderPolicy(collectPolicy(dump, true)), /^policy: HELD \(this node enforces NetworkPolicy \(since .*\) but the daemon was started without --policy-dir or --network-policy: .*--disable-network-policy/);
});

t.test('--disable-network-policy: every endpoint opens up and the mark goes', async (t) => {
  const { node, call, attached, applied } = await enforcingNode(t, ['web']);
  const registry = new Registry();
  const { agent } = node.agent();
  const started = await startNode(agent, { disablePolicy: true, logger: pino({ level: 'silent' }), registry });
  t.equal(started.policyHold, undefined);
  t.same(applied(), [[hostVethName('web', 'eth0'), false, false]]);
  t.notOk(node.store.snapshot().policyEnforced);
  t.match(await registry.metrics(), /\nvnet_cni_policy_held 0\n/);
  await agent.add(call('after'));
  t.equal(attached('after')!.policy, undefined, 'no longer enforcing: no policy at ADD');
  t.equal(servedAgent(agent, {}), agent, 'nothing to add: the agent is served as it is');
});

t.test('a node that never enforced policy: no flag needed, nothing held', async (t) => {
  const { node, call, applied, attached } = setup(t);
  const { agent } = node.agent();
  await agent.add(call('web'));
  const started = await startNode(agent, { logger: pino({ level: 'silent' }), registry: new Registry() });
  t.equal(started.policyHold, undefined);
  t.same(applied(), []);
  t.same(attached('web')!.policy, undefined);
});

t.test('a broken policy is logged as an error saying what it isolates', async (t) => {
  const { dir, node } = setup(t);
  put(dir, 'typo.yaml', 'kind: NetworkPolcy\nmetadata: { name: deny, namespace: shop }\nspec: { podSelector: {} }\n');
  const { logger, lines } = recordingLogger();
  const policy = new NodePolicy({ dir, logger, registry: new Registry() });
  const { agent } = node.agent({ policy: policy.engine });
  await startNode(agent, { policy, logger, registry: new Registry() });
  t.teardown(() => policy.stop());
  await policy.engine.idle();
  t.match(lines.filter((l) => l.level === 50), [{ msg: /^broken policy \(enforced fail-closed\): typo\.yaml: kind "NetworkPolcy" .*it isolates every pod in namespace shop both ways/ }]);
});
