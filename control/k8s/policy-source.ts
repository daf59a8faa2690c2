// The Kubernetes PolicySource: NetworkPolicies (networking.k8s.io/v1),
// namespaces and the pods of the whole cluster, each through a Reflector
// (list, watch from the resourceVersion with bookmarks, 410 → relist, backoff,
// the deadlines of KubeApi.watch), turned into the PolicySnapshot the policy
// compiler reads. The pod watch is the daemon's own when it shares it (one
// cluster-wide pod watch feeds both the endpoint UID/labels and policy).
//
// What goes into the snapshot (docs/policy.md):
//   - policies: metadata and spec as the API holds them; a spec without
//     podSelector selects every pod of the namespace (an omitted selector
//     decodes as the empty one in the API server too);
//   - namespaces: name and labels, with `kubernetes.io/metadata.name` added
//     when an older server did not set it;
//   - pods: labels, IPs from status.podIPs (else status.podIP), IPv4 only
//     until IpFamily grows; named ports from spec.containers[].ports
//     (protocol default TCP). Pods on the host network (their IP is the
//     node's) and pods that have finished (Succeeded/Failed: their IP may
//     already be another pod's) are left out.
// Conversions are cached by object identity, so a change costs one pass
// over the collections, not a conversion of every object.
import net from 'node:net';
import type { Logger } from 'pino';
import type { BackoffOptions } from './backoff.js';
import type { KubeApi, KubeObject } from './kube-api.js';
import { Reflector, type ReflectorTiming, type WatchHealth } from './reflector.js';
import type { L4Protocol, NetworkPolicy, PolicyNamespace, PolicyPod, PolicySnapshot, PolicySource } from '../policy/types.js';

/** The namespace label the API server sets on every namespace (Kubernetes 1.21+). */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

const PROTOCOLS = new Set<string>(['TCP', 'UDP', 'SCTP']);

type Json = Record<string, unknown>;
const obj = (x: unknown): Json | undefined => (typeof x === 'object' && x !== null && !Array.isArray(x) ? (x as Json) : undefined);
const arr = (x: unknown): unknown[] => (Array.isArray(x) ? x : []);
const labelsOf = (o: KubeObject): Record<string, string> => ({ ...(o.metadata?.labels ?? {}) });
/** A deep, plain-JSON copy (list results are client-node model instances; watch events plain objects). */
const plain = <T>(x: T): T => (x === undefined ? x : (JSON.parse(JSON.stringify(x)) as T));

export function policyFromObject(o: KubeObject): NetworkPolicy | undefined {
  const m = o.metadata;
  if (!m?.name || !m.namespace) return undefined;
  const spec = plain(obj(o.spec) ?? {}) as Partial<NetworkPolicy['spec']>;
  return {
    metadata: { name: m.name, namespace: m.namespace, ...(m.uid ? { uid: m.uid } : {}), ...(m.resourceVersion ? { resourceVersion: m.resourceVersion } : {}) },
    spec: { ...spec, podSelector: spec.podSelector ?? {} },
  };
}

export function namespaceFromObject(o: KubeObject): PolicyNamespace | undefined {
  const name = o.metadata?.name;
  if (!name) return undefined;
  return { name, labels: { [NAMESPACE_NAME_LABEL]: name, ...labelsOf(o) } };
}

export function podFromObject(o: KubeObject): PolicyPod | undefined {
  const m = o.metadata;
  if (!m?.name || !m.namespace) return undefined;
  const spec = obj(o.spec) ?? {};
  const status = obj(o.status) ?? {};
  if (spec.hostNetwork === true) return undefined;
  if (status.phase === 'Succeeded' || status.phase === 'Failed') return undefined;
  const listed = arr(status.podIPs).map((x) => obj(x)?.ip).filter((ip): ip is string => typeof ip === 'string');
  const texts = listed.length > 0 ? listed : typeof status.podIP === 'string' && status.podIP ? [status.podIP] : [];
  const ips: PolicyPod['ips'] = [];
  for (const address of new Set(texts)) if (net.isIPv4(address)) ips.push({ family: 'ipv4', address });
  const namedPorts: PolicyPod['namedPorts'] = [];
  for (const container of arr(spec.containers)) {
    for (const p of arr(obj(container)?.ports)) {
      const port = obj(p);
      const name = port?.name;
      const number = port?.containerPort;
      const protocol = port?.protocol === undefined ? 'TCP' : typeof port.protocol === 'string' ? port.protocol.toUpperCase() : '';
      if (typeof name !== 'string' || !name || typeof number !== 'number' || !PROTOCOLS.has(protocol)) continue;
      namedPorts.push({ name, protocol: protocol as L4Protocol, port: number });
    }
  }
  return { namespace: m.namespace, name: m.name, labels: labelsOf(o), ips, namedPorts };
}

/** One collection's converted form, reconverting only the objects that changed (the reflector replaces changed objects). */
class Converted<T> {
  private cache = new Map<string, { source: KubeObject; value: T | undefined }>();

  constructor(private readonly convert: (o: KubeObject) => T | undefined) {}

  all(items: ReadonlyMap<string, KubeObject>): T[] {
    const next = new Map<string, { source: KubeObject; value: T | undefined }>();
    const out: T[] = [];
    for (const key of [...items.keys()].sort()) {
      const source = items.get(key)!;
      let entry = this.cache.get(key);
      if (!entry || entry.source !== source) entry = { source, value: this.convert(source) };
      next.set(key, entry);
      if (entry.value !== undefined) out.push(entry.value);
    }
    this.cache = next;
    return out;
  }
}

/** What the source needs of KubeApi (narrow, so tests can hand in anything that lists and watches). */
export type PolicyApi = Pick<KubeApi, 'podListWatch' | 'namespaceListWatch' | 'networkPolicyListWatch'>;

export interface KubernetesPolicySourceOptions {
  logger: Logger;
  backoff?: BackoffOptions;
  timing?: Partial<ReflectorTiming>;
  /**
   * A running reflector of every pod of the cluster (`api.podListWatch()`
   * with no node name) to share; the source neither starts nor stops it.
   * Without it the source runs its own.
   */
  pods?: Reflector<KubeObject>;
}

export class KubernetesPolicySource implements PolicySource {
  /** The pod watch is the cluster's: a local endpoint without its Pod here is unknown, not unlabelled (docs/policy.md). */
  readonly podsAuthoritative = true;
  private readonly pods: Reflector<KubeObject>;
  private readonly ownPods: boolean;
  private readonly namespaces: Reflector<KubeObject>;
  private readonly policies: Reflector<KubeObject>;
  private readonly listeners = new Set<() => void>();
  private readonly unsubscribe: Array<() => void> = [];
  private readonly convertedPolicies = new Converted(policyFromObject);
  private readonly convertedNamespaces = new Converted(namespaceFromObject);
  private readonly convertedPods = new Converted(podFromObject);
  private last: PolicySnapshot | undefined;
  /** Collections changed since the last snapshot; the others keep their arrays (the compiler skips what is identical). */
  private readonly dirty = new Set<'pods' | 'namespaces' | 'policies'>(['pods', 'namespaces', 'policies']);
  private announced = false;
  private readonly log: Logger;

  constructor(api: PolicyApi, opts: KubernetesPolicySourceOptions) {
    this.log = opts.logger.child({ component: 'policy-source' });
    const common = { logger: this.log, ...(opts.backoff ? { backoff: opts.backoff } : {}), ...(opts.timing ? { timing: opts.timing } : {}) };
    this.ownPods = opts.pods === undefined;
    this.pods = opts.pods ?? new Reflector<KubeObject>({ source: api.podListWatch(), ...common });
    this.namespaces = new Reflector<KubeObject>({ source: api.namespaceListWatch(), ...common });
    this.policies = new Reflector<KubeObject>({ source: api.networkPolicyListWatch(), ...common });
    this.unsubscribe.push(this.pods.subscribe(() => this.changed('pods')));
    this.unsubscribe.push(this.namespaces.subscribe(() => this.changed('namespaces')));
    this.unsubscribe.push(this.policies.subscribe(() => this.changed('policies')));
  }

  /** Shared until the next change (the same object while nothing changed): read-only for callers. */
  snapshot(): PolicySnapshot | undefined {
    if (!this.pods.stats.synced || !this.namespaces.stats.synced || !this.policies.stats.synced) return undefined;
    if (this.dirty.size > 0 || !this.last) {
      const last = this.last;
      const fresh = (what: 'pods' | 'namespaces' | 'policies'): boolean => !last || this.dirty.has(what);
      this.last = {
        policies: fresh('policies') ? this.convertedPolicies.all(this.policies.current()) : last!.policies,
        namespaces: fresh('namespaces') ? this.convertedNamespaces.all(this.namespaces.current()) : last!.namespaces,
        pods: fresh('pods') ? this.convertedPods.all(this.pods.current()) : last!.pods,
      };
      this.dirty.clear();
    }
    return this.last;
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  /** Starts the watches; resolves at once (snapshot() stays undefined until all three collections have synced). */
  start(): Promise<void> {
    if (this.ownPods) this.pods.start();
    this.namespaces.start();
    this.policies.start();
    return Promise.resolve();
  }

  /** Resolves once policies, namespaces and pods have each been listed. */
  async synced(): Promise<void> {
    await Promise.all([this.pods.synced(), this.namespaces.synced(), this.policies.synced()]);
  }

  async stop(): Promise<void> {
    for (const u of this.unsubscribe.splice(0)) u();
    await Promise.all([this.ownPods ? this.pods.stop() : undefined, this.namespaces.stop(), this.policies.stop()]);
  }

  /** Counters for DUMP / `vnetctl debug kubernetes`. */
  stats(): Record<string, Record<string, unknown>> {
    return {
      networkPolicies: { ...this.policies.stats, known: this.policies.current().size },
      namespaces: { ...this.namespaces.stats, known: this.namespaces.current().size },
      ...(this.ownPods ? { policyPods: { ...this.pods.stats, known: this.pods.current().size } } : {}),
    };
  }

  /** The health of the watches this source runs (the shared pod watch is its owner's to report). */
  health(now = Date.now()): WatchHealth[] {
    return [this.policies, this.namespaces, ...(this.ownPods ? [this.pods] : [])].map((r) => r.health(now));
  }

  private changed(what: 'pods' | 'namespaces' | 'policies'): void {
    this.dirty.add(what);
    if (!this.announced) {
      const snap = this.snapshot();
      if (!snap) return;
      this.announced = true;
      this.log.info({ policies: snap.policies.length, namespaces: snap.namespaces.length, pods: snap.pods.length }, 'policy source synced');
    }
    for (const listener of [...this.listeners]) {
      try {
        listener();
      } catch (err) {
        this.log.error({ err }, 'policy change listener failed');
      }
    }
  }
}

/** The Kubernetes policy source; see KubernetesPolicySourceOptions for sharing the daemon's pod watch. */
export function createKubernetesPolicySource(api: PolicyApi, opts: KubernetesPolicySourceOptions): KubernetesPolicySource {
  return new KubernetesPolicySource(api, opts);
}
