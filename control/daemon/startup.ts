// What the daemon does to the node before it serves: reconcile the store with
// the kernel, then policy over the endpoints that survived it.
//
// Order matters: policy applied first would program rules for endpoints that
// reconcile then removes (their pod died while the daemon was down) and leave
// rebuilt ones to a second pass. Reconcile first; an endpoint it rebuilds gets
// default deny (the engine has not synced), and the engine's first sync then
// programs every surviving endpoint (the policy reconcile).
//
// Policy is one of three things, and turning it off is an explicit act:
//   - a source (--policy-dir / --network-policy): the engine runs;
//   - --disable-network-policy: every endpoint opens up, the node's mark goes;
//   - neither: a node marked as enforcing keeps its rules (PolicyHold), since
//     a flag lost from a unit file must not silently remove isolation.
import { Gauge, type Registry } from 'prom-client';
import type { Agent } from '../agent/agent.js';
import type { Logger } from '../log.js';
import type { NodePolicy, PolicyHold } from '../policy/node.js';
import type { ReconcileReport } from './metrics.js';

export interface NodeStartOptions {
  /** The policy engine, when the daemon has a source. */
  policy?: NodePolicy;
  /** --disable-network-policy (exclusive with a source). */
  disablePolicy?: boolean;
  logger: Logger;
  /** Gets vnet_cni_policy_held. */
  registry: Registry;
}

export interface NodeStart {
  reconcile: ReconcileReport | Error;
  /** Set when the node enforces policy but the daemon has no source. */
  policyHold?: PolicyHold;
}

export async function startNode(agent: Agent, opts: NodeStartOptions): Promise<NodeStart> {
  const { logger } = opts;
  let reconcile: ReconcileReport | Error;
  try {
    reconcile = await agent.reconcile();
  } catch (err) {
    reconcile = err as Error;
    logger.error({ err }, 'reconcile on start failed; serving anyway');
  }
  let policyHold: PolicyHold | undefined;
  if (opts.policy) await opts.policy.start(agent);
  else if (opts.disablePolicy || (await agent.store.peek()).policyEnforced) {
    // The policy code is loaded only on nodes that have (had) policy.
    const { disableNodePolicy, holdNodePolicy } = await import('../policy/node.js');
    if (opts.disablePolicy) {
      await disableNodePolicy(agent, logger).catch((err: unknown) => logger.error({ err }, 'could not open up the endpoints of a node that enforced policy'));
    } else policyHold = await holdNodePolicy(agent, logger);
  }
  new Gauge({
    name: 'vnet_cni_policy_held',
    help: '1: this node enforces NetworkPolicy but the daemon runs without a policy source (--policy-dir, --network-policy); programmed rules are kept, new endpoints start default-deny. --disable-network-policy turns policy off',
    registers: [opts.registry],
  }).set(policyHold ? 1 : 0);
  return { reconcile, ...(policyHold ? { policyHold } : {}) };
}
