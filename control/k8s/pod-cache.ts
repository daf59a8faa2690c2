// The pods on this node by namespace/name, from the pod watch
// (fieldSelector spec.nodeName=<node>, or the cluster-wide watch NetworkPolicy
// needs, filtered here by spec.nodeName): what an ADD's K8S_POD_NAMESPACE /
// K8S_POD_NAME resolve to without an API call.
import type { PodInfo } from '../agent/agent.js';
import type { KubeObject } from './kube-api.js';
import type { ReflectorChange } from './reflector.js';

export class PodCache {
  private pods = new Map<string, PodInfo>();

  /** `nodeName`: keep only that node's pods (when the watch is cluster-wide). */
  constructor(private readonly nodeName?: string) {}

  /**
   * Follow the reflector: one watch event (`change`) is applied alone, so a
   * cluster-wide watch costs O(1) per event, not a pass over every pod; after
   * a list the contents are rebuilt. True when this node's pods changed.
   */
  update(items: ReadonlyMap<string, KubeObject>, change?: ReflectorChange<KubeObject>): boolean {
    if (change) {
      const info = change.type === 'DELETED' ? undefined : this.infoOf(change.object);
      const key = this.keyOf(change.object);
      if (!key) return false;
      const old = this.pods.get(key);
      if (!info) return this.pods.delete(key);
      this.pods.set(key, info);
      return !old || !same(old, info);
    }
    const next = new Map<string, PodInfo>();
    let changed = false;
    for (const pod of items.values()) {
      const key = this.keyOf(pod);
      const info = this.infoOf(pod);
      if (!key || !info) continue;
      const old = this.pods.get(key);
      if (!old || !same(old, info)) changed = true;
      next.set(key, info);
    }
    if (next.size !== this.pods.size) changed = true;
    this.pods = next;
    return changed;
  }

  private keyOf(pod: KubeObject): string | undefined {
    const m = pod.metadata;
    return m?.name && m.namespace ? `${m.namespace}/${m.name}` : undefined;
  }

  /** What the cache keeps of a pod, or undefined when it is not one of this node's (or lacks a UID). */
  private infoOf(pod: KubeObject): PodInfo | undefined {
    const m = pod.metadata;
    if (!m?.name || !m.namespace || !m.uid) return undefined;
    if (this.nodeName !== undefined && (pod.spec as { nodeName?: unknown } | undefined)?.nodeName !== this.nodeName) return undefined;
    return { uid: m.uid, labels: { ...(m.labels ?? {}) } };
  }

  lookup = (namespace: string, name: string): PodInfo | undefined => this.pods.get(`${namespace}/${name}`);

  get size(): number {
    return this.pods.size;
  }
}

function same(a: PodInfo, b: PodInfo): boolean {
  if (a.uid !== b.uid) return false;
  const ak = Object.keys(a.labels);
  return ak.length === Object.keys(b.labels).length && ak.every((k) => a.labels[k] === b.labels[k]);
}
