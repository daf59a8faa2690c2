// `debug kubernetes`: what the daemon's Kubernetes side is doing, from its
// DUMP: the NodeNetworkConfig and pod watches (lists, watches, 410 relists,
// errors, consecutive failures = current backoff step, last resourceVersion),
// the status writer and the node condition reporter.
import type { NodeState } from '../../store/node-store.js';

export interface KubernetesView {
  enabled: boolean;
  why?: string;
  stats?: Record<string, Record<string, unknown>>;
}

export function collectKubernetes(state: NodeState, fromDaemon: boolean): KubernetesView {
  const stats = (state as NodeState & { kubernetes?: Record<string, Record<string, unknown>> }).kubernetes;
  if (stats) return { enabled: true, stats };
  return { enabled: false, why: fromDaemon ? 'the daemon runs without --node-name (no Kubernetes API)' : 'no daemon answered; only the daemon talks to the Kubernetes API' };
}

export function renderKubernetes(v: KubernetesView): string {
  if (!v.enabled) return `kubernetes: off (${v.why})\n`;
  let out = '';
  for (const [part, fields] of Object.entries(v.stats ?? {})) {
    out += `${part}: ${Object.entries(fields).map(([k, x]) => `${k}=${x === undefined ? '-' : String(x)}`).join(' ')}\n`;
  }
  return out;
}
