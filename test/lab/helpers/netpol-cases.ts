// The upstream Kubernetes netpol e2e model (test/e2e/network/netpol) as data,
// for the conformance test (test/lab/netpol-conformance.test.ts): namespaces
// x, y, z labelled ns=<name>, pods a, b, c in each labelled pod=<name>, every
// pod serving TCP and UDP on 80 and 81 (named serve-80-tcp, serve-81-udp...),
// plus a resolver pod kube-system/dns (k8s-app=kube-dns, UDP 53, named "dns").
//
// Each case is a list of steps; a step is the whole cluster state (the
// policies in force, label changes from the model) and its expected truth
// table, written out as upstream does: `deny(from, to, proto, port)`. Pairs of
// a pod with itself are always expected to connect: that traffic stays on the
// pod's loopback, where no policy applies (upstream ignores these pairs).
// Pure: no I/O. test/unit/netpol-cases.test.ts checks every table against the
// compiler before any lab time is spent on it.
import { NAMESPACE_NAME_LABEL } from '../../../control/policy/compile.js';
import type { L4Protocol, NetworkPolicy, PolicyNamespace, PolicyPod, PolicySnapshot } from '../../../control/policy/types.js';

export const NAMESPACES = ['x', 'y', 'z'] as const;
export const PODS = ['a', 'b', 'c'] as const;
/** The 9 model pods, "ns/name". */
export const MODEL = NAMESPACES.flatMap((ns) => PODS.map((p) => `${ns}/${p}`));
export const DNS = 'kube-system/dns';
/** Every pod the test creates: the model and the resolver. */
export const EVERY_POD = [...MODEL, DNS];

export type Proto = 'TCP' | 'UDP';
export interface Column {
  proto: Proto;
  port: number;
  /** The probed pods (rows are always the 9 model pods). */
  targets: string[];
}
/** What each step probes: 81 pairs on each of TCP/UDP 80/81, and every model pod to the resolver on UDP 53. */
export const COLUMNS: Column[] = [
  { proto: 'TCP', port: 80, targets: MODEL },
  { proto: 'TCP', port: 81, targets: MODEL },
  { proto: 'UDP', port: 80, targets: MODEL },
  { proto: 'UDP', port: 81, targets: MODEL },
  { proto: 'UDP', port: 53, targets: [DNS] },
];

export const nsOf = (pod: string): string => pod.split('/')[0]!;
export const podOf = (pod: string): string => pod.split('/')[1]!;

export interface Step {
  what: string;
  policies: NetworkPolicy[];
  /** Labels that differ from the model's, per pod ("ns/name") and per namespace. */
  podLabels?: Record<string, Record<string, string>>;
  nsLabels?: Record<string, Record<string, string>>;
  /** true: from → to on proto/port must not connect. */
  deny: (from: string, to: string, proto: Proto, port: number) => boolean;
}

export interface Case {
  name: string;
  /** In the bounded CI form (the full form runs every case). */
  ci?: boolean;
  steps: (w: World) => Step[];
}

/** What a case may know about the lab: pod addresses and the subnet they are in. */
export interface World {
  ip(pod: string): string;
  subnet: string;
}

// ---------------------------------------------------------------------------
// The cluster snapshot of a step
// ---------------------------------------------------------------------------

export function defaultLabels(pod: string): Record<string, string> {
  return pod === DNS ? { 'k8s-app': 'kube-dns' } : { pod: podOf(pod) };
}

export function namedPorts(pod: string): PolicyPod['namedPorts'] {
  if (pod === DNS) return [{ name: 'dns', protocol: 'UDP', port: 53 }];
  return [80, 81].flatMap((port) => (['TCP', 'UDP'] as const).map((protocol) => ({ name: `serve-${port}-${protocol.toLowerCase()}`, protocol, port })));
}

export function snapshotOf(step: Step, w: World): PolicySnapshot {
  const namespaces: PolicyNamespace[] = [...NAMESPACES, 'kube-system'].map((name) => ({
    name,
    labels: step.nsLabels?.[name] ?? (name === 'kube-system' ? {} : { ns: name }),
  }));
  const pods: PolicyPod[] = EVERY_POD.map((key) => ({
    namespace: nsOf(key),
    name: podOf(key),
    labels: step.podLabels?.[key] ?? defaultLabels(key),
    ips: [{ family: 'ipv4', address: w.ip(key) }],
    namedPorts: namedPorts(key),
  }));
  return { policies: step.policies, namespaces, pods };
}

/** The expected verdict of one probe: self pairs always connect (loopback). */
export function expected(step: Step, from: string, to: string, proto: Proto, port: number): boolean {
  return from === to || !step.deny(from, to, proto, port);
}

// ---------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------

function np(namespace: string, name: string, spec: Partial<NetworkPolicy['spec']>): NetworkPolicy {
  return { metadata: { namespace, name }, spec: { podSelector: {}, ...spec } };
}
const pod = (name: string) => ({ matchLabels: { pod: name } });
const ns = (name: string) => ({ matchLabels: { ns: name } });
const never = (): boolean => false;
const tcp = (port: number, endPort?: number) => ({ protocol: 'TCP' as L4Protocol, port, ...(endPort ? { endPort } : {}) });
const udp = (port: number | string, endPort?: number) => ({ protocol: 'UDP' as L4Protocol, port, ...(endPort ? { endPort } : {}) });

export const CASES: Case[] = [
  {
    name: 'default deny ingress (x)',
    ci: true,
    steps: () => [
      { what: 'no policy: everything connects', policies: [], deny: never },
      { what: 'deny all ingress in x', policies: [np('x', 'deny-ingress', { policyTypes: ['Ingress'] })], deny: (_f, to) => nsOf(to) === 'x' },
    ],
  },
  {
    name: 'default deny egress (x)',
    steps: () => [{ what: 'deny all egress in x', policies: [np('x', 'deny-egress', { policyTypes: ['Egress'] })], deny: (f) => nsOf(f) === 'x' }],
  },
  {
    name: 'allow all over deny all (x)',
    steps: () => {
      const denyAll = np('x', 'deny-all', { policyTypes: ['Ingress', 'Egress'] });
      return [
        { what: 'deny all ingress and egress in x', policies: [denyAll], deny: (f, to) => nsOf(f) === 'x' || nsOf(to) === 'x' },
        {
          what: 'plus allow-all ingress and allow-all egress in x',
          policies: [denyAll, np('x', 'allow-all', { policyTypes: ['Ingress', 'Egress'], ingress: [{}], egress: [{}] })],
          deny: never,
        },
      ];
    },
  },
  {
    name: 'allow ingress from a namespace (x/a <- y)',
    steps: () => [
      {
        what: 'x/a admits namespace y only',
        policies: [np('x', 'from-y', { podSelector: pod('a'), ingress: [{ from: [{ namespaceSelector: ns('y') }] }] })],
        deny: (f, to) => to === 'x/a' && nsOf(f) !== 'y',
      },
    ],
  },
  {
    name: 'pod and namespace selector in one peer (AND)',
    ci: true,
    steps: () => [
      {
        what: 'x/a admits pods b of namespaces y and z',
        policies: [
          np('x', 'and', {
            podSelector: pod('a'),
            ingress: [{ from: [{ namespaceSelector: { matchExpressions: [{ key: 'ns', operator: 'In', values: ['y', 'z'] }] }, podSelector: pod('b') }] }],
          }),
        ],
        deny: (f, to) => to === 'x/a' && !(f === 'y/b' || f === 'z/b'),
      },
    ],
  },
  {
    name: 'pod selector and namespace selector as two peers (OR)',
    steps: () => [
      {
        what: 'x/a admits every pod of y and z, and x/b',
        policies: [
          np('x', 'or', {
            podSelector: pod('a'),
            ingress: [{ from: [{ namespaceSelector: { matchExpressions: [{ key: 'ns', operator: 'In', values: ['y', 'z'] }] } }, { podSelector: pod('b') }] }],
          }),
        ],
        deny: (f, to) => to === 'x/a' && nsOf(f) === 'x' && f !== 'x/b',
      },
    ],
  },
  {
    name: 'ipBlock with except',
    steps: (w) => [
      {
        what: `x/a admits ${w.subnet} except the pods of y`,
        policies: [np('x', 'cidr-in', { podSelector: pod('a'), ingress: [{ from: [{ ipBlock: { cidr: w.subnet, except: ['y/a', 'y/b', 'y/c'].map((p) => `${w.ip(p)}/32`) } }] }] })],
        deny: (f, to) => to === 'x/a' && nsOf(f) === 'y',
      },
      {
        what: `x/a may send to ${w.subnet} except z/c`,
        policies: [np('x', 'cidr-out', { podSelector: pod('a'), policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: w.subnet, except: [`${w.ip('z/c')}/32`] } }] }] })],
        deny: (f, to) => f === 'x/a' && to === 'z/c',
      },
    ],
  },
  {
    name: 'named ports',
    steps: () => [
      {
        what: 'x/a admits anyone on serve-81-tcp and serve-80-udp',
        policies: [np('x', 'named-in', { podSelector: pod('a'), ingress: [{ ports: [{ port: 'serve-81-tcp' }, udp('serve-80-udp')] }] })],
        deny: (_f, to, p, n) => to === 'x/a' && !((p === 'TCP' && n === 81) || (p === 'UDP' && n === 80)),
      },
      {
        what: 'x/a may send to namespace y on serve-80-tcp only (resolved on each destination pod)',
        policies: [np('x', 'named-out', { podSelector: pod('a'), policyTypes: ['Egress'], egress: [{ to: [{ namespaceSelector: ns('y') }], ports: [{ port: 'serve-80-tcp' }] }] })],
        deny: (f, to, p, n) => f === 'x/a' && !(nsOf(to) === 'y' && p === 'TCP' && n === 80),
      },
    ],
  },
  {
    name: 'endPort',
    ci: true,
    steps: () => [
      {
        what: 'x/a admits namespace y on TCP 80-81',
        policies: [np('x', 'range-in', { podSelector: pod('a'), ingress: [{ from: [{ namespaceSelector: ns('y') }], ports: [tcp(80, 81)] }] })],
        deny: (f, to, p) => to === 'x/a' && !(nsOf(f) === 'y' && p === 'TCP'),
      },
      {
        what: 'z may send UDP 53-80 only',
        policies: [np('z', 'range-out', { policyTypes: ['Egress'], egress: [{ ports: [udp(53, 80)] }] })],
        deny: (f, _to, p, n) => nsOf(f) === 'z' && !(p === 'UDP' && n >= 53 && n <= 80),
      },
    ],
  },
  {
    name: 'multiple policies are a union',
    steps: () => [
      {
        what: 'x/a admits x/b (one policy) and namespace z on TCP 81 (another)',
        policies: [
          np('x', 'from-b', { podSelector: pod('a'), ingress: [{ from: [{ podSelector: pod('b') }] }] }),
          np('x', 'from-z-81', { podSelector: pod('a'), ingress: [{ from: [{ namespaceSelector: ns('z') }], ports: [{ port: 81 }] }] }),
        ],
        deny: (f, to, p, n) => to === 'x/a' && f !== 'x/b' && !(nsOf(f) === 'z' && p === 'TCP' && n === 81),
      },
    ],
  },
  {
    name: 'policy update and delete',
    ci: true,
    steps: () => [
      {
        what: 'x/a admits x/b',
        policies: [np('x', 'allow-client', { podSelector: pod('a'), ingress: [{ from: [{ podSelector: pod('b') }] }] })],
        deny: (f, to) => to === 'x/a' && f !== 'x/b',
      },
      {
        what: 'the same policy updated: x/a admits x/c instead',
        policies: [np('x', 'allow-client', { podSelector: pod('a'), ingress: [{ from: [{ podSelector: pod('c') }] }] })],
        deny: (f, to) => to === 'x/a' && f !== 'x/c',
      },
      { what: 'the policy deleted: everything connects again', policies: [], deny: never },
    ],
  },
  {
    name: "a pod's labels change",
    steps: () => {
      const p = np('x', 'from-b-anywhere', { podSelector: pod('a'), ingress: [{ from: [{ namespaceSelector: {}, podSelector: pod('b') }] }] });
      return [
        { what: 'x/a admits pods b of every namespace', policies: [p], deny: (f, to) => to === 'x/a' && podOf(f) !== 'b' },
        { what: 'y/c relabelled pod=b: now admitted', policies: [p], podLabels: { 'y/c': { pod: 'b' } }, deny: (f, to) => to === 'x/a' && podOf(f) !== 'b' && f !== 'y/c' },
        { what: 'x/a relabelled pod=a2: no longer selected', policies: [p], podLabels: { 'y/c': { pod: 'b' }, 'x/a': { pod: 'a2' } }, deny: never },
      ];
    },
  },
  {
    name: "a namespace's labels change",
    steps: () => {
      const p = np('x', 'from-team-blue', { podSelector: pod('a'), ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'blue' } } }] }] });
      return [
        { what: 'x/a admits namespaces team=blue: none yet', policies: [p], deny: (_f, to) => to === 'x/a' },
        { what: 'z labelled team=blue', policies: [p], nsLabels: { z: { ns: 'z', team: 'blue' } }, deny: (f, to) => to === 'x/a' && nsOf(f) !== 'z' },
        { what: 'the label removed again', policies: [p], deny: (_f, to) => to === 'x/a' },
      ];
    },
  },
  {
    name: 'egress to DNS',
    ci: true,
    steps: () => [
      {
        what: 'x may send UDP 53 to the resolver pod only',
        policies: [
          np('x', 'allow-dns', {
            policyTypes: ['Egress'],
            egress: [
              {
                to: [{ namespaceSelector: { matchLabels: { [NAMESPACE_NAME_LABEL]: 'kube-system' } }, podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } } }],
                ports: [udp(53)],
              },
            ],
          }),
        ],
        deny: (f, to, p, n) => nsOf(f) === 'x' && !(to === DNS && p === 'UDP' && n === 53),
      },
    ],
  },
];

// ---------------------------------------------------------------------------
// Reading an observed table
// ---------------------------------------------------------------------------

/** The key of one observation: "from to PROTO/port". */
export const probeKey = (from: string, to: string, proto: Proto, port: number): string => `${from} ${to} ${proto}/${port}`;

/**
 * The cells that differ from the expectation, as upstream prints them: one
 * grid per probed port (rows: from, columns: to). '.' connected and '-'
 * blocked as expected; 'A' connected though it must be blocked; 'B' blocked
 * though it must connect.
 */
export function mismatchTable(step: Step, seen: Map<string, boolean>): { count: number; text: string } {
  let count = 0;
  const parts: string[] = [];
  for (const col of COLUMNS) {
    const rows: string[] = [];
    let colBad = 0;
    for (const from of MODEL) {
      const cells = col.targets.map((to) => {
        const want = expected(step, from, to, col.proto, col.port);
        const got = seen.get(probeKey(from, to, col.proto, col.port)) ?? false;
        if (got === want) return got ? '.' : '-';
        colBad++;
        return got ? 'A' : 'B';
      });
      rows.push(`${from.padEnd(5)} ${cells.map((c) => c.padEnd(4)).join('')}`);
    }
    count += colBad;
    if (colBad) parts.push([`${col.proto}/${col.port}: ${colBad} unexpected`, `from  ${col.targets.map((to) => (to === DNS ? 'dns' : to).padEnd(4)).join('')}`, ...rows].join('\n'));
  }
  return { count, text: `${step.what}\n('.' connected, '-' blocked, as expected; 'A' connected but must be blocked; 'B' blocked but must connect)\n${parts.join('\n\n')}` };
}

/**
 * The bounded CI form runs the cases marked ci; VNET_NETPOL_FULL=1 (npm run
 * test:netpol) runs them all; `only` (VNET_NETPOL_ONLY) picks the cases whose
 * name contains it, to rerun one after a fix.
 */
export function selectedCases(full: boolean, only?: string): Case[] {
  const cases = full ? CASES : CASES.filter((c) => c.ci);
  return only ? CASES.filter((c) => c.name.toLowerCase().includes(only.toLowerCase())) : cases;
}
