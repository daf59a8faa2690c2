// The daemon's policy wiring: the source (a watched directory, or the
// Kubernetes watches), the engine, the agent, the metrics and the DUMP view.
//
// Order at start: the node state is marked as enforcing policy (so a
// standalone ADD while the daemon is down starts default-deny), the ready
// endpoints of the store are registered with the engine as "kernel state
// unknown", then the source starts: its first sync programs every endpoint's
// policy (the reconcile with the kernel). Stopping leaves the kernel's rules
// in place: nothing opens up while the daemon is away. The daemon starts this
// after reconcile (control/daemon/startup.ts), so the engine sees the
// endpoints that survived it.
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Agent } from '../agent/agent.js';
import { allowAll } from './compile.js';
import { createDirectoryPolicySource } from './dir-source.js';
import { PolicyEngine } from './engine.js';
import { registerPolicyMetrics } from './metrics.js';
import type { PolicyDump } from '../debug/views/policy.js';
import type { EndpointPolicy, PolicyProblem, PolicySource } from './types.js';

/** Endpoints programmed per node-lock hold when the engine applies a change. */
export const APPLY_CHUNK = 32;

export interface NodePolicyOptions {
  /** --policy-dir */
  dir?: string;
  /** The Kubernetes source (--network-policy), started and stopped by its owner. */
  kubernetes?: PolicySource;
  logger: Logger;
  registry: Registry;
}

export class NodePolicy {
  readonly engine: PolicyEngine;
  private agent: Agent | undefined;
  private readonly log: Logger;
  private readonly sourceName: string;

  constructor(opts: NodePolicyOptions) {
    this.log = opts.logger.child({ part: 'policy' });
    const logProblems = (problems: PolicyProblem[]): void => {
      for (const p of problems) {
        if (p.broken) this.log.error({ policy: p.policy }, `broken policy (enforced fail-closed): ${p.message}`);
        else this.log.warn({ policy: p.policy }, `policy problem: ${p.message}`);
      }
    };
    const source: PolicySource = opts.kubernetes ?? createDirectoryPolicySource({ dir: opts.dir!, onProblems: logProblems });
    this.sourceName = opts.kubernetes ? 'kubernetes' : `directory ${opts.dir}`;
    const metrics = registerPolicyMetrics(opts.registry, () => this.engine);
    this.engine = new PolicyEngine({
      source,
      ownsSource: !opts.kubernetes,
      apply: (changed) => this.apply(changed),
      // The store is the truth about endpoints: a CNI call that ran standalone changed only it.
      endpoints: async () => (this.agent ? this.agent.policyEndpoints() : this.engine.endpoints()),
      onDrift: (added, removed) => this.log.warn({ added, removed }, 'policy endpoints corrected from the node store (a CNI call ran without the daemon)'),
      onSyncLatency: (seconds, n) => {
        metrics.observeSync(seconds);
        this.log.info({ endpoints: n, ms: Math.round(seconds * 1000) }, 'policy programmed');
      },
      onProblems: opts.kubernetes ? logProblems : (problems) => logProblems(problems.filter((p) => p.policy.includes('/'))),
      onError: (err) => this.log.error({ err }, 'policy sync failed; retrying'),
    });
  }

  private async apply(changed: EndpointPolicy[]): Promise<void> {
    if (!this.agent) throw new Error('policy engine started before the agent');
    // Each chunk holds the node lock for its own kernel writes only: a change
    // that moves most endpoints (a pod most policies admit, at 1,000 policies
    // seconds of iptables work) no longer keeps every ADD waiting for all of it.
    const skipped: string[] = [];
    for (let i = 0; i < changed.length; i += APPLY_CHUNK) skipped.push(...(await this.agent.applyPolicies(changed.slice(i, i + APPLY_CHUNK))));
    if (skipped.length > 0) this.log.debug({ skipped }, 'policy for endpoints not ready (being added or deleted) skipped');
  }

  async start(agent: Agent): Promise<void> {
    this.agent = agent;
    await agent.setPolicyEnforced(true);
    for (const ep of await agent.policyEndpoints()) this.engine.addEndpoint(ep);
    await this.engine.start();
    this.log.info({ source: this.sourceName, endpoints: this.engine.endpoints().length }, 'policy engine started');
  }

  async stop(): Promise<void> {
    await this.engine.stop();
  }

  /** For the daemon's DUMP (vnetctl debug policy). */
  dump(): PolicyDump {
    return { status: this.engine.status(), source: this.sourceName, endpoints: this.engine.view() };
  }
}

/**
 * `--disable-network-policy`: policy is turned off on purpose. If the node
 * enforced policy, open every endpoint up (not isolated) and clear the mark,
 * so pods are not left behind their last rules.
 */
export async function disableNodePolicy(agent: Agent, log: Logger): Promise<void> {
  const state = await agent.store.peek();
  if (!state.policyEnforced) {
    log.info('--disable-network-policy: this node does not enforce policy; nothing to open');
    return;
  }
  const open = (await agent.policyEndpoints()).map(allowAll);
  await agent.applyPolicies(open);
  await agent.setPolicyEnforced(false);
  log.warn({ endpoints: open.length }, '--disable-network-policy: policy is off; every endpoint opened up and the node no longer marked as enforcing');
}

/** A node that enforces policy, under a daemon started without a policy source (and without --disable-network-policy). */
export interface PolicyHold {
  /** When the node started enforcing (NodeState.policyEnforced.since). */
  since: string;
  /** What is wrong and which flag fixes it (logged, STATUS, vnetctl debug policy). */
  message: string;
}

/**
 * The daemon has no policy source. A node that enforced policy keeps it
 * (a lost flag must not silently remove isolation): the programmed rules stay,
 * new endpoints start default-deny (Agent.initialPolicy), and the hold is
 * logged as an error and reported. Undefined on a node that never enforced.
 */
export async function holdNodePolicy(agent: Agent, log: Logger): Promise<PolicyHold | undefined> {
  const enforced = (await agent.store.peek()).policyEnforced;
  if (!enforced) return undefined;
  const message = `this node enforces NetworkPolicy (since ${enforced.since}) but the daemon was started without --policy-dir or --network-policy: ` +
    'every endpoint keeps the rules last programmed and new endpoints start default-deny, and nothing updates them. ' +
    'Restart the daemon with its policy source (--policy-dir DIR or --network-policy), or with --disable-network-policy to turn policy off and open every endpoint';
  log.error({ since: enforced.since }, message);
  return { since: enforced.since, message };
}
