// The pods on this node by namespace/name, from the pod watch
// (fieldSelector spec.nodeName=<node>, or the cluster-wide watch NetworkPolicy
// needs, filtered here by spec.nodeName): what an ADD's K8S_POD_NAMESPACE /
// K8S_POD_NAME resolve to without an API call.
import type { PodInfo } from '../agent/agent.js';
import type { KubeObject } from './kube-api.js';

export class PodCache {
  private pods = new Map<string, PodInfo>();

  /** `nodeName`: keep only that node's pods (when the watch is cluster-wide). */
  constructor(private readonly nodeName?: string) {}

  /** Replace the contents from the reflector's collection; true when this node's pods changed. */
  update(items: ReadonlyMap<string, KubeObject>): boolean {
    const next = new Map<string, PodInfo>();
    let changed = false;
    for (const pod of items.values()) {
      const m = pod.metadata;
      if (!m?.name || !m.namespace || !m.uid) continue;
      if (this.nodeName !== undefined && (pod.spec as { nodeName?: unknown } | undefined)?.nodeName !== this.nodeName) continue;
      const key = `${m.namespace}/${m.name}`;
      const info = { uid: m.uid, labels: { ...(m.labels ?? {}) } };
      const old = this.pods.get(key);
      if (!old || old.uid !== info.uid || JSON.stringify(old.labels) !== JSON.stringify(info.labels)) changed = true;
      next.set(key, info);
    }
    if (next.size !== this.pods.size) changed = true;
    this.pods = next;
    return changed;
  }

  lookup = (namespace: string, name: string): PodInfo | undefined => this.pods.get(`${namespace}/${name}`);

  get size(): number {
    return this.pods.size;
  }
}
