// `debug kubernetes`: what the daemon's Kubernetes side is doing, from its
// DUMP: the NodeNetworkConfig and pod watches (lists, watches, 410 relists,
// errors, consecutive failures = current backoff step, last resourceVersion),
// the status writer and the node condition reporter; then one line per watch
// with its age, its last event and its failure streak, so a stuck watch shows.
import type { NodeState } from '../../store/node-store.js';
import type { WatchHealth } from '../../k8s/reflector.js';

export interface KubernetesView {
  enabled: boolean;
  why?: string;
  stats?: Record<string, Record<string, unknown>>;
  watches?: WatchHealth[];
}

export function collectKubernetes(state: NodeState, fromDaemon: boolean): KubernetesView {
  const dumped = (state as NodeState & { kubernetes?: Record<string, unknown> }).kubernetes;
  if (dumped) {
    const { watches, ...stats } = dumped;
    return { enabled: true, stats: stats as Record<string, Record<string, unknown>>, ...(Array.isArray(watches) ? { watches: watches as WatchHealth[] } : {}) };
  }
  return { enabled: false, why: fromDaemon ? 'the daemon runs without --node-name (no Kubernetes API)' : 'no daemon answered; only the daemon talks to the Kubernetes API' };
}

function watchLine(w: WatchHealth): string {
  const state = w.state === 'none' ? 'no watch (backing off or listing)' : `${w.state === 'open' ? 'open' : 'connecting (no response headers yet)'} ${w.ageSeconds ?? 0}s`;
  const last = w.lastEventAgoSeconds === undefined ? 'never' : `${w.lastEventAgoSeconds}s ago`;
  return `watch ${w.resource}: ${state}, last event ${last}, failure streak ${w.failures}\n`;
}

/** One DUMP stat: scalars as they are, anything structured as JSON, absent as '-'. */
function statText(x: unknown): string {
  if (x === undefined) return '-';
  if (typeof x === 'string' || typeof x === 'number' || typeof x === 'boolean' || typeof x === 'bigint' || x === null) return String(x);
  return JSON.stringify(x) ?? '-';
}

export function renderKubernetes(v: KubernetesView): string {
  if (!v.enabled) return `kubernetes: off (${v.why})\n`;
  let out = '';
  for (const [part, fields] of Object.entries(v.stats ?? {})) {
    out += `${part}: ${Object.entries(fields).map(([k, x]) => `${k}=${statText(x)}`).join(' ')}\n`;
  }
  for (const w of v.watches ?? []) out += watchLine(w);
  return out;
}
