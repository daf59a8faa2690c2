// The policy engine's Prometheus metrics, registered into the daemon's
// registry: compiled rules, selectors, peers, policies (valid or not),
// problems, endpoints by isolation, and the sync latency (change seen → the
// kernel enforces it). Drops per pod and direction come with the dataplanes'
// counters (the ebpf counter map, the iptables DROP lines), not from here.
import { Gauge, Histogram, type Registry } from 'prom-client';
import type { PolicyEngine } from './engine.js';

export interface PolicyMetrics {
  /** Feed PolicyEngineOptions.onSyncLatency with this. */
  observeSync(seconds: number): void;
}

export function registerPolicyMetrics(registry: Registry, engine: () => PolicyEngine | undefined): PolicyMetrics {
  const status = () => engine()?.status();
  new Gauge({
    name: 'vnet_cni_policy_rules', help: 'Compiled NetworkPolicy rules over this node\'s endpoints and both directions', registers: [registry],
    collect() { this.set(status()?.stats?.rules ?? 0); },
  });
  new Gauge({
    name: 'vnet_cni_policy_peers', help: 'Peer CIDRs over every compiled rule of this node', registers: [registry],
    collect() { this.set(status()?.stats?.peers ?? 0); },
  });
  new Gauge({
    name: 'vnet_cni_policy_selectors', help: 'Label selectors compiled (policy podSelectors and peer selectors)', registers: [registry],
    collect() { this.set(status()?.stats?.selectors ?? 0); },
  });
  new Gauge({
    name: 'vnet_cni_policy_policies', help: 'NetworkPolicies known to the policy source, by state (valid: read whole; invalid: broken, it isolates the pods it may select both ways with no allow rule)', labelNames: ['state'], registers: [registry],
    collect() {
      const s = status()?.stats;
      this.set({ state: 'valid' }, s?.validPolicies ?? 0);
      this.set({ state: 'invalid' }, s ? s.policies - s.validPolicies : 0);
    },
  });
  new Gauge({
    name: 'vnet_cni_policy_problems', help: 'Problems with policies or policy files (each is logged and shown by vnetctl debug policy)', registers: [registry],
    collect() { this.set(status()?.problems.length ?? 0); },
  });
  new Gauge({
    name: 'vnet_cni_policy_pending_endpoints', help: 'Endpoints whose new policy could not be programmed yet (retried)', registers: [registry],
    collect() { this.set(status()?.pending ?? 0); },
  });
  new Gauge({
    name: 'vnet_cni_policy_synced', help: '1 once the policy source has synced and its policy is programmed', registers: [registry],
    collect() { this.set(status()?.synced ? 1 : 0); },
  });
  const sync = new Histogram({
    name: 'vnet_cni_policy_sync_seconds', help: 'From a policy, pod or namespace change (or an endpoint added or removed) to the kernel enforcing it',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [registry],
  });
  return { observeSync: (s) => sync.observe(s) };
}
