// The upstream Kubernetes netpol e2e model, as data: namespaces x, y, z
// (labelled ns=<name>), pods a, b, c in each (labelled pod=<name>), all serving
// TCP and UDP 80 and 81 under the named ports serve-80-tcp, serve-81-udp...
// Every pod is a local endpoint here, so one compile gives all 9 policies and
// a truth table can be read off with policyAllows on both ends of a pair.
import { compilePolicies, type CompileResult, type LocalEndpoint } from '../../control/policy/compile.js';
import { policyAllows } from '../../control/policy/evaluate.js';
import type { L4Protocol, NetworkPolicy, PolicyNamespace, PolicyPod, PolicySnapshot } from '../../control/policy/types.js';

export const NAMESPACES = ['x', 'y', 'z'] as const;
export const PODS = ['a', 'b', 'c'] as const;
export const ALL = NAMESPACES.flatMap((ns) => PODS.map((p) => `${ns}/${p}`));

export function ipOf(pod: string): string {
  const [ns, name] = pod.split('/') as [string, string];
  return `10.0.${NAMESPACES.indexOf(ns as 'x') + 1}.${PODS.indexOf(name as 'a') + 10}`;
}

export function model(): { namespaces: PolicyNamespace[]; pods: PolicyPod[] } {
  const namespaces = NAMESPACES.map((ns) => ({ name: ns, labels: { ns } }));
  const pods: PolicyPod[] = ALL.map((key) => {
    const [namespace, name] = key.split('/') as [string, string];
    return {
      namespace,
      name,
      labels: { pod: name },
      ips: [{ family: 'ipv4', address: ipOf(key) }],
      namedPorts: [80, 81].flatMap((port) =>
        (['TCP', 'UDP'] as const).map((protocol) => ({ name: `serve-${port}-${protocol.toLowerCase()}`, protocol, port })),
      ),
    };
  });
  return { namespaces, pods };
}

export function locals(): LocalEndpoint[] {
  return ALL.map((key) => {
    const [namespace, name] = key.split('/') as [string, string];
    return { family: 'ipv4', address: ipOf(key), namespace, name };
  });
}

export function compileModel(policies: NetworkPolicy[], tweak?: (s: PolicySnapshot) => void): CompileResult {
  const snap: PolicySnapshot = { policies, ...model() };
  tweak?.(snap);
  return compilePolicies(snap, locals());
}

/** A NetworkPolicy from a compact spec. */
export function np(namespace: string, name: string, spec: Partial<NetworkPolicy['spec']>): NetworkPolicy {
  return { metadata: { namespace, name }, spec: { podSelector: {}, ...spec } };
}

/** "from→to" for every allowed pair, over the 81 pairs (self included). */
export function truth(res: CompileResult, protocol: L4Protocol, port: number): Set<string> {
  const byAddr = new Map(res.endpoints.map((e) => [e.address, e]));
  const out = new Set<string>();
  for (const from of ALL) {
    for (const to of ALL) {
      const src = byAddr.get(ipOf(from))!;
      const dst = byAddr.get(ipOf(to))!;
      const ok =
        policyAllows(src, { direction: 'egress', remote: ipOf(to), protocol, port }) &&
        policyAllows(dst, { direction: 'ingress', remote: ipOf(from), protocol, port });
      if (ok) out.add(`${from}→${to}`);
    }
  }
  return out;
}

/** Expected table: every pair allowed except where `deny(from, to)` says so. */
export function expect(deny: (from: string, to: string) => boolean): Set<string> {
  const out = new Set<string>();
  for (const from of ALL) for (const to of ALL) if (!deny(from, to)) out.add(`${from}→${to}`);
  return out;
}

export const nsOf = (pod: string): string => pod.split('/')[0]!;
export const nameOf = (pod: string): string => pod.split('/')[1]!;

/** The differences, for readable failures. */
export function diff(got: Set<string>, want: Set<string>): { unexpectedlyAllowed: string[]; unexpectedlyDenied: string[] } {
  return {
    unexpectedlyAllowed: [...got].filter((k) => !want.has(k)).sort(),
    unexpectedlyDenied: [...want].filter((k) => !got.has(k)).sort(),
  };
}
