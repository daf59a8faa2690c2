// Validation of NetworkPolicy objects into the compiler's checked form. The
// API server would reject what this rejects; a watched directory has no API
// server, and a bad object must never stop the good ones. So every problem is
// recorded and the smallest enclosing part is skipped, always failing closed:
//  - a policy that cannot be read as a whole (no namespace or name, no spec,
//    a bad podSelector, an unknown field in spec, or an object its source
//    could not read): the policy is *broken*: it still selects what it can
//    (its podSelector if readable, else every pod of its namespace; every
//    namespace if that is unreadable) and isolates those pods both ways with
//    no allow rule. Dropping it would open what it was written to close;
//  - a bad peer or port, or an unknown field in a rule, peer, port or
//    ipBlock: the rule it is in (the rule then allows nothing, but the policy
//    still isolates the pods it selects; a misspelt `from` would otherwise
//    read as "from everywhere");
//  - an unknown policyTypes value: the policy isolates both directions.
import { isObject } from '../../cni/validate.js';
import { cidrContains, isIpv6Text, parseCidr4, type Cidr4 } from './cidr.js';
import { compileSelector, SelectorError, type LabelMatcher } from './selector.js';
import type { L4Protocol, LabelSelector, NetworkPolicy, PolicyProblem, PortRange } from './types.js';

export interface ParsedIpBlock {
  cidr: Cidr4;
  except: Cidr4[];
}
export interface ParsedSelectorPeer {
  /** Absent: every pod (of the matched namespaces). */
  pod?: LabelMatcher;
  /** Absent: the policy's own namespace only. */
  ns?: LabelMatcher;
}
export interface NamedPort {
  name: string;
  protocol: L4Protocol;
}
export interface ParsedPorts {
  ranges: PortRange[];
  named: NamedPort[];
}
export interface ParsedRule {
  /** `from`/`to` absent or empty: every peer. */
  all: boolean;
  ipBlocks: ParsedIpBlock[];
  selectorPeers: ParsedSelectorPeer[];
  /** The peers as written (JSON): in one namespace, rules written alike choose the same peers. */
  peersText: string;
  /** null: every port and protocol. */
  ports: ParsedPorts | null;
}
export interface ParsedPolicy {
  key: string;
  namespace: string;
  select: LabelMatcher;
  ingress: boolean;
  egress: boolean;
  ingressRules: ParsedRule[];
  egressRules: ParsedRule[];
  /** Selectors compiled for this policy (metrics). */
  selectorCount: number;
  /** The policy could not be read: it isolates what it selects both ways, with no rule (fail closed). */
  broken?: true;
}

/** The namespace of a broken policy whose own namespace is unreadable: it applies in every namespace. */
export const ANY_NAMESPACE = '*';

const PROTOCOLS: ReadonlySet<string> = new Set(['TCP', 'UDP', 'SCTP']);
// IANA_SVC_NAME, as the API validates container port names.
const PORT_NAME = /^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/;

/** A full port range of one protocol: `port` absent in a NetworkPolicyPort. */
export const ALL_PORTS = { port: 0, endPort: 65535 } as const;

export function isValidPortName(name: string): boolean {
  return PORT_NAME.test(name) && /[a-z]/.test(name) && !name.includes('--');
}

class RuleError extends Error {}

/** The first field of `o` that the API does not define at this place, if any. */
function unknownField(o: Record<string, unknown>, known: readonly string[]): string | undefined {
  return Object.keys(o).find((k) => o[k] !== undefined && !known.includes(k));
}

function rejectUnknown(o: Record<string, unknown>, known: readonly string[], where: string): void {
  const f = unknownField(o, known);
  if (f !== undefined) throw new RuleError(`${where}: unknown field ${JSON.stringify(f)} (${known.join(', ')})`);
}

function selector(v: unknown, where: string): LabelMatcher {
  try {
    return compileSelector(v as LabelSelector);
  } catch (e) {
    if (e instanceof SelectorError) throw new RuleError(`${where}: ${e.message}`);
    throw e;
  }
}

function parseIpBlock(v: unknown, where: string): ParsedIpBlock | undefined {
  if (!isObject(v) || typeof v.cidr !== 'string') throw new RuleError(`${where}.ipBlock: cidr is required`);
  rejectUnknown(v, ['cidr', 'except'], `${where}.ipBlock`);
  // An IPv6 block is valid but matches nothing on an IPv4 node.
  if (isIpv6Text(v.cidr)) return undefined;
  const cidr = parseCidr4(v.cidr);
  if (!cidr) throw new RuleError(`${where}.ipBlock: ${JSON.stringify(v.cidr)} is not a CIDR (a.b.c.d/n)`);
  const except: Cidr4[] = [];
  const ex = v.except ?? [];
  if (!Array.isArray(ex)) throw new RuleError(`${where}.ipBlock.except must be a list of CIDRs`);
  for (const e of ex) {
    const c = typeof e === 'string' ? parseCidr4(e) : undefined;
    if (!c) throw new RuleError(`${where}.ipBlock.except: ${JSON.stringify(e)} is not an IPv4 CIDR`);
    if (!cidrContains(cidr, c) || c.prefix <= cidr.prefix) {
      throw new RuleError(`${where}.ipBlock.except: ${e} is not strictly inside ${v.cidr}`);
    }
    except.push(c);
  }
  return { cidr, except };
}

function parsePort(v: unknown, where: string): { range?: PortRange; named?: NamedPort } {
  if (!isObject(v)) throw new RuleError(`${where}: must be an object`);
  rejectUnknown(v, ['protocol', 'port', 'endPort'], where);
  const protocol = v.protocol ?? 'TCP';
  if (typeof protocol !== 'string' || !PROTOCOLS.has(protocol)) {
    throw new RuleError(`${where}: unknown protocol ${JSON.stringify(protocol)} (TCP, UDP or SCTP)`);
  }
  const proto = protocol as L4Protocol;
  const { port, endPort } = v;
  if (endPort !== undefined && endPort !== null) {
    if (typeof port !== 'number') throw new RuleError(`${where}: endPort needs a numeric port`);
    if (!Number.isInteger(endPort) || (endPort as number) < port || (endPort as number) > 65535) {
      throw new RuleError(`${where}: endPort ${JSON.stringify(endPort)} must be an integer from port (${port}) to 65535`);
    }
  }
  if (port === undefined || port === null) return { range: { protocol: proto, ...ALL_PORTS } };
  if (typeof port === 'number') {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RuleError(`${where}: port ${port} is not 1-65535`);
    return { range: { protocol: proto, port, endPort: typeof endPort === 'number' ? endPort : port } };
  }
  if (typeof port === 'string') {
    if (!isValidPortName(port)) {
      throw new RuleError(`${where}: ${JSON.stringify(port)} is neither a port number nor a valid port name`);
    }
    return { named: { name: port, protocol: proto } };
  }
  throw new RuleError(`${where}: port must be a number or a name`);
}

function parseRule(v: unknown, dir: 'ingress' | 'egress', where: string): ParsedRule {
  if (!isObject(v)) throw new RuleError(`${where}: must be an object`);
  const peerField = dir === 'ingress' ? 'from' : 'to';
  rejectUnknown(v, [peerField, 'ports'], where);
  const peers = v[peerField];
  const rule: ParsedRule = { all: false, ipBlocks: [], selectorPeers: [], peersText: JSON.stringify(peers ?? null), ports: null };
  if (peers === undefined || peers === null || (Array.isArray(peers) && peers.length === 0)) {
    rule.all = true;
  } else {
    if (!Array.isArray(peers)) throw new RuleError(`${where}.${peerField} must be a list`);
    peers.forEach((p: unknown, i) => {
      const w = `${where}.${peerField}[${i}]`;
      if (!isObject(p)) throw new RuleError(`${w}: must be an object`);
      rejectUnknown(p, ['podSelector', 'namespaceSelector', 'ipBlock'], w);
      const hasSel = p.podSelector != null || p.namespaceSelector != null;
      if (p.ipBlock != null) {
        if (hasSel) throw new RuleError(`${w}: ipBlock cannot be combined with podSelector or namespaceSelector`);
        const b = parseIpBlock(p.ipBlock, w);
        if (b) rule.ipBlocks.push(b);
        return;
      }
      if (!hasSel) throw new RuleError(`${w}: needs podSelector, namespaceSelector or ipBlock`);
      const sp: ParsedSelectorPeer = {};
      if (p.podSelector != null) sp.pod = selector(p.podSelector, `${w}.podSelector`);
      if (p.namespaceSelector != null) sp.ns = selector(p.namespaceSelector, `${w}.namespaceSelector`);
      rule.selectorPeers.push(sp);
    });
  }
  const ports = v.ports;
  if (ports !== undefined && ports !== null && !(Array.isArray(ports) && ports.length === 0)) {
    if (!Array.isArray(ports)) throw new RuleError(`${where}.ports must be a list`);
    const parsed: ParsedPorts = { ranges: [], named: [] };
    ports.forEach((p: unknown, i) => {
      const r = parsePort(p, `${where}.ports[${i}]`);
      if (r.range) parsed.ranges.push(r.range);
      if (r.named) parsed.named.push(r.named);
    });
    rule.ports = parsed;
  }
  return rule;
}

/**
 * A policy that cannot be read: it isolates `select` (default: every pod) of
 * `namespace` both ways with no rule, never nothing.
 */
function brokenPolicy(key: string, namespace: string, select: LabelMatcher | undefined): ParsedPolicy {
  return {
    key, namespace, select: select ?? (() => true), ingress: true, egress: true, ingressRules: [], egressRules: [], selectorCount: select ? 1 : 0, broken: true,
  };
}

const SPEC_FIELDS = ['podSelector', 'policyTypes', 'ingress', 'egress'] as const;

/** Validate one policy; problems go to `problems`. A policy that cannot be read comes back broken (see above), never undefined. */
export function parsePolicy(np: NetworkPolicy, problems: PolicyProblem[]): ParsedPolicy {
  const md = (np as { metadata?: unknown }).metadata;
  const text = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
  const namespace = isObject(md) ? text(md.namespace) : undefined;
  const name = isObject(md) ? text(md.name) : undefined;
  const key = `${namespace ?? ANY_NAMESPACE}/${name ?? '(unnamed)'}`;
  const spec = (np as { spec?: unknown }).spec;
  let select: LabelMatcher | undefined;
  const broken = (why: string): ParsedPolicy => {
    const pods = select ? 'the pods its podSelector selects' : 'every pod';
    const where = namespace ? `in namespace ${namespace}` : 'in every namespace (its own is unknown)';
    problems.push({ policy: key, broken: true, message: `${why}; the policy is broken: it isolates ${pods} ${where} both ways, with no allow rule, until it is fixed` });
    return brokenPolicy(key, namespace ?? ANY_NAMESPACE, select);
  };
  if (np.unreadable !== undefined) return broken(np.unreadable);
  if (isObject(spec)) {
    try {
      select = compileSelector((spec.podSelector ?? {}));
    } catch (e) {
      if (!(e instanceof SelectorError)) throw e;
      return broken(`spec.podSelector: ${e.message}`);
    }
  }
  if (!namespace || !name) return broken('metadata.name and metadata.namespace are required');
  if (!isObject(spec)) return broken('spec is missing');
  const unknown = unknownField(spec, SPEC_FIELDS);
  if (unknown !== undefined) return broken(`spec: unknown field ${JSON.stringify(unknown)} (${SPEC_FIELDS.join(', ')})`);
  const out: ParsedPolicy = {
    key,
    namespace,
    select: select!,
    ingress: true,
    egress: false,
    ingressRules: [],
    egressRules: [],
    selectorCount: 1,
  };
  const types = spec.policyTypes;
  const egressList = spec.egress;
  if (types === undefined || types === null || (Array.isArray(types) && types.length === 0)) {
    // The API server's default: Ingress always, Egress when there are egress rules.
    out.egress = Array.isArray(egressList) && egressList.length > 0;
  } else if (!Array.isArray(types) || types.some((t) => t !== 'Ingress' && t !== 'Egress')) {
    problems.push({ policy: key, message: `spec.policyTypes ${JSON.stringify(types)}: only Ingress and Egress exist; the policy isolates both directions` });
    out.egress = true;
  } else {
    out.ingress = types.includes('Ingress');
    out.egress = types.includes('Egress');
  }
  for (const dir of ['ingress', 'egress'] as const) {
    const list = spec[dir];
    if (!(dir === 'ingress' ? out.ingress : out.egress) || list === undefined || list === null) continue;
    if (!Array.isArray(list)) {
      problems.push({ policy: key, message: `spec.${dir} must be a list; no ${dir} rule of this policy is enforced` });
      continue;
    }
    list.forEach((r: unknown, i) => {
      try {
        const rule = parseRule(r, dir, `spec.${dir}[${i}]`);
        out.selectorCount += rule.selectorPeers.reduce((n, p) => n + (p.pod ? 1 : 0) + (p.ns ? 1 : 0), 0);
        (dir === 'ingress' ? out.ingressRules : out.egressRules).push(rule);
      } catch (e) {
        if (!(e instanceof RuleError)) throw e;
        problems.push({ policy: key, message: `${e.message}; this rule is skipped (it allows nothing)` });
      }
    });
  }
  return out;
}
