// The pods on this node by namespace/name, from the pod watch
// (fieldSelector spec.nodeName=<node>): what an ADD's K8S_POD_NAMESPACE /
// K8S_POD_NAME resolve to without an API call.
import type { PodInfo } from '../agent/agent.js';
import type { KubeObject } from './kube-api.js';

export class PodCache {
  private pods = new Map<string, PodInfo>();

  /** Replace the contents from the reflector's collection. */
  update(items: ReadonlyMap<string, KubeObject>): void {
    const next = new Map<string, PodInfo>();
    for (const pod of items.values()) {
      const m = pod.metadata;
      if (!m?.name || !m.namespace || !m.uid) continue;
      next.set(`${m.namespace}/${m.name}`, { uid: m.uid, labels: { ...(m.labels ?? {}) } });
    }
    this.pods = next;
  }

  lookup = (namespace: string, name: string): PodInfo | undefined => this.pods.get(`${namespace}/${name}`);

  get size(): number {
    return this.pods.size;
  }
}
