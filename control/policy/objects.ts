// Kubernetes-shaped objects (as written in YAML/JSON files) → the compiler's
// snapshot types. Only the fields policy reads; everything else is ignored.
// An object that cannot be read (not a map, no name, no or an unknown kind, a
// NetworkPolicy without spec) is not dropped: it becomes an unreadable policy
// over its namespace, which the compiler enforces fail-closed (parse.ts). A
// misspelt `kind: NetworkPolicy` must not open what it was written to close.
import { isObject as isObj } from '../../cni/validate.js';
import type { NetworkPolicy, PolicyNamespace, PolicyPod } from './types.js';

type Obj = Record<string, unknown>;

function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isObj(v)) return out;
  for (const [k, val] of Object.entries(v)) if (typeof val === 'string') out[k] = val;
  return out;
}

export type PolicyObject =
  | { kind: 'NetworkPolicy'; value: NetworkPolicy }
  | { kind: 'Namespace'; value: PolicyNamespace }
  | { kind: 'Pod'; value: PolicyPod }
  /** An object that could not be read: a NetworkPolicy with `unreadable` set (broken, fail closed). */
  | { kind: 'Unreadable'; value: NetworkPolicy };

/** The namespace kubectl assumes when an object names none. */
export const DEFAULT_NAMESPACE = 'default';

/**
 * An object that could not be read, as a policy: `namespace` '' when not even
 * that is known (the compiler then applies it in every namespace).
 */
export function unreadableObject(namespace: string, name: string, why: string): PolicyObject {
  return { kind: 'Unreadable', value: { metadata: { name, namespace }, spec: { podSelector: {} }, unreadable: why } };
}

/**
 * One object, or the items of a List (kind List, PodList, ...). `where` names
 * the object in messages and names an unreadable object that has no name of
 * its own ("shop.yaml#2": the second document of shop.yaml).
 */
export function objectsFrom(doc: unknown, where = 'object'): PolicyObject[] {
  if (doc === null || doc === undefined) return []; // an empty YAML document
  if (!isObj(doc)) return [unreadableObject('', where, `${where} is not a Kubernetes object (a map with kind)`)];
  const kind = doc.kind;
  if (typeof kind === 'string' && kind.endsWith('List') && Array.isArray(doc.items)) {
    return doc.items.flatMap((item, i) => objectsFrom(item, `${where}.items[${i}]`));
  }
  const md = isObj(doc.metadata) ? doc.metadata : {};
  const name = typeof md.name === 'string' ? md.name : '';
  const namespace = typeof md.namespace === 'string' && md.namespace ? md.namespace : DEFAULT_NAMESPACE;
  const unreadable = (why: string): PolicyObject[] => [unreadableObject(namespace, name || where, `${where}: ${why}`)];
  if (!name) return unreadable(`a ${typeof kind === 'string' ? kind : 'object'} needs metadata.name`);
  switch (kind) {
    case 'NetworkPolicy': {
      if (!isObj(doc.spec)) return unreadable(`NetworkPolicy ${namespace}/${name} has no spec`);
      // The spec is validated by the compiler, which reports each bad part.
      return [{ kind, value: { metadata: { name, namespace }, spec: doc.spec as unknown as NetworkPolicy['spec'] } }];
    }
    case 'Namespace':
      return [{ kind, value: { name, labels: stringMap(md.labels) } }];
    case 'Pod':
      return [{ kind, value: podFrom(doc, name, namespace) }];
    default:
      return unreadable(`kind ${JSON.stringify(kind)} is not used by policy (NetworkPolicy, Namespace, Pod, or a List of them)`);
  }
}

function podFrom(doc: Obj, name: string, namespace: string): PolicyPod {
  const md = doc.metadata as Obj;
  const spec = isObj(doc.spec) ? doc.spec : {};
  const status = isObj(doc.status) ? doc.status : {};
  const namedPorts: PolicyPod['namedPorts'] = [];
  const list = (v: unknown): unknown[] => (Array.isArray(v) ? (v as unknown[]) : []);
  for (const c of [...list(spec.containers), ...list(spec.initContainers)]) {
    if (!isObj(c)) continue;
    for (const p of list(c.ports)) {
      if (!isObj(p) || typeof p.name !== 'string' || typeof p.containerPort !== 'number') continue;
      const protocol = typeof p.protocol === 'string' ? p.protocol : 'TCP';
      if (protocol !== 'TCP' && protocol !== 'UDP' && protocol !== 'SCTP') continue;
      namedPorts.push({ name: p.name, protocol, port: p.containerPort });
    }
  }
  const ips = new Set<string>();
  if (typeof status.podIP === 'string' && status.podIP) ips.add(status.podIP);
  if (Array.isArray(status.podIPs)) for (const i of status.podIPs) if (isObj(i) && typeof i.ip === 'string') ips.add(i.ip);
  return {
    namespace,
    name,
    labels: stringMap(md.labels),
    // IPv6 pod IPs are kept out until the compiler speaks IPv6.
    ips: [...ips].filter((ip) => !ip.includes(':')).map((address) => ({ family: 'ipv4' as const, address })),
    namedPorts,
  };
}
