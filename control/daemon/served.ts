// The Agent as the daemon serves it: DUMP carries the Kubernetes watches'
// counters and the policy engine's view beside the store, and a policy hold
// (the node enforces policy, the daemon has no source) is in DUMP and fails
// CNI STATUS: new pods on such a node would stay default-deny, so it is not
// ready for them (a --live probe still counts the daemon alive).
import type { Agent } from '../agent/agent.js';
import { NotReadyError } from '../errors.js';
import type { PolicyDump } from '../debug/views/policy.js';
import type { PolicyHold } from '../policy/node.js';

export interface ServedParts {
  kubernetes?: { stats(): unknown };
  policy?: { dump(): PolicyDump };
  policyHold?: PolicyHold;
}

export function servedAgent(agent: Agent, parts: ServedParts): Agent {
  const { kubernetes, policy, policyHold } = parts;
  if (!kubernetes && !policy && !policyHold) return agent;
  return new Proxy(agent, {
    get(target, prop) {
      if (prop === 'dump') {
        return async () => ({
          ...(await target.dump()),
          ...(kubernetes ? { kubernetes: kubernetes.stats() } : {}),
          ...(policy ? { policy: policy.dump() } : {}),
          ...(policyHold ? { policyHold } : {}),
        });
      }
      if (prop === 'status' && policyHold) {
        return (): Promise<void> => Promise.reject(new NotReadyError(policyHold.message));
      }
      const value: unknown = Reflect.get(target, prop);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}
