// Mutated and random CNI calls (stdin config + CNI_* environment) for the
// plugin fuzzer, and an oracle that judges a call valid or not from the rules
// in docs/cni.md, written independently of cni/config.ts and cni/env.ts.
import path from 'node:path';
import type { Rng } from './scale.js';

export const VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export const COMMANDS = ['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS'] as const;
const MAX_STDIN = 1024 * 1024;
/** docs/cni.md: objects/arrays nested deeper than this (the top-level object is 1) are a decode failure. */
const MAX_DEPTH = 64;

/** Nesting depth of a parsed JSON value (written apart from the plugin's, recursive: inputs stay under 5,000 levels). */
function depthOf(v: unknown): number {
  if (typeof v !== 'object' || v === null) return 0;
  let deepest = 0;
  for (const child of Array.isArray(v) ? v : Object.values(v)) deepest = Math.max(deepest, depthOf(child));
  return deepest + 1;
}

export type Plugin = 'azure-vnet' | 'azure-vnet-ipam';

export interface CniInput {
  plugin: Plugin;
  env: Record<string, string>;
  stdin: string;
  /** What was mutated, for the fault table. */
  kind: string;
}

/** The seed conflists' plugin entries, as libcni hands them over (name and cniVersion injected). */
export function seedConfigs(dir: string, version: string): Array<Record<string, unknown>> {
  const common = { cniVersion: version, name: 'azure', logFile: path.join(dir, 'azure-vnet.log'), stateDir: path.join(dir, 'state') };
  return [
    // The original azure-vnet conflist entry, unchanged.
    { ...common, type: 'azure-vnet', mode: 'bridge', bridge: 'azure0', ipam: { type: 'azure-vnet-ipam' } },
    { ...common, type: 'azure-vnet', mode: 'transparent', adapterName: '', ipsToRouteViaHost: ['169.254.20.10'], dns: { nameservers: ['168.63.129.16'] }, ipam: { type: 'azure-vnet-ipam', environment: 'azure' } },
    { ...common, type: 'azure-vnet', dataplane: 'ebpf', dataplaneFallback: true, vnetCidrs: ['10.240.0.0/16', '172.16.0.0/12'], maxPods: 30, ipam: { type: 'azure-vnet-ipam', environment: 'static', subnet: '10.240.0.0/16', addresses: ['10.240.0.5', '10.240.0.6'], gateway: '10.240.0.1' } },
    { ...common, type: 'azure-vnet', daemonSocket: path.join(dir, 'vnet.sock'), bpfRoot: '/sys/fs/bpf/vnet-cni', logLevel: 'DEBUG', capabilities: { portMappings: true }, runtimeConfig: { portMappings: [] } },
    { ...common, type: 'bridge', bridge: 'cni0', ipam: { type: 'azure-vnet-ipam', environment: 'fileIpam', interfacesFile: path.join(dir, 'interfaces.json') } },
  ];
}

const JUNK: unknown[] = [null, 0, -1, 1.5, Infinity, true, false, '', ' ', 'x', '../../etc', '\n', '\u0000', 'é', [], [1], {}, { a: 1 }, '🙂'.repeat(3)];

/** Candidate values per key: some valid, some not; the oracle decides, not these lists. */
function candidates(key: string, dir: string): unknown[] {
  switch (key) {
    case 'cniVersion': return [...VERSIONS, '0.2.0', '0.1.0', '1.2.0', '2.0.0', '1.0', 'v1.0.0', 1, null, undefined];
    case 'name': return ['azure', 'a', 'k8s-pod-network', 'net.1_2', '-bad', '.hidden', 'has space', 'a/b', '', 'x'.repeat(300), undefined];
    case 'type': return ['azure-vnet', 'bridge', '', 'macvlan', '../../bin/sh', '/bin/sh', undefined];
    case 'mode': return ['bridge', 'transparent', 'Bridge', 'tunnel', ''];
    case 'bridge':
    case 'master': return ['azure0', 'eth0', 'a'.repeat(15), 'a'.repeat(16), '.', '..', 'br/0', 'br:0', 'br 0', ''];
    case 'logLevel': return ['info', 'DEBUG', 'Trace', 'silent', 'verbose', ''];
    case 'dataplane': return ['iptables', 'bridge-iptables', 'ebpf', 'EBPF', 'nftables', ''];
    case 'dataplaneFallback': return [true, false, 'true', 0, 1];
    case 'maxPods': return [1, 30, 250, 0, 251, -5, 2.5, '30', 1e9];
    case 'stateDir':
    case 'logFile':
    case 'daemonSocket': return [path.join(dir, `${key}.x`), path.join(dir, 'a', '..', `${key}.y`), 'relative/path', './x', '', `${dir}/nul\u0000byte`];
    case 'bpfRoot': return ['/sys/fs/bpf/vnet-cni', '/sys/fs/bpf/x', 'bpf', ''];
    case 'vnetCidrs': return [[], ['10.240.0.0/16'], '10.240.0.0/16,172.16.0.0/12', ['10.1.2.3/16'], ['300.1.0.0/16'], ['10.0.0.0/33'], ['10.0.0.0'], 'nonsense', [5], ''];
    case 'capabilities':
    case 'runtimeConfig': return [{}, { portMappings: true }, 'x', [], 3];
    case 'ipam.type': return ['azure-vnet-ipam', 'host-local', ''];
    case 'ipam.environment': return ['azure', 'fileIpam', 'static', 'kubernetes', 'mas', 'Azure', ''];
    case 'ipam.wireserverUrl': return ['http://168.63.129.16', 'https://wire.example/', 'http://127.0.0.1:8080', 'ftp://x', 'not a url', 'http://', ''];
    case 'ipam.wireserverTimeoutMs': return [1, 5000, 300000, 0, 300001, 1.5, '5000'];
    case 'ipam.subnet': return ['10.240.0.0/16', '10.240.0.0/24', '10.240.0.0/33', '10.240.0.0', '999.0.0.0/8', ''];
    case 'ipam.addresses': return [['10.240.0.5'], ['10.240.0.5', '10.240.0.5'], ['10.241.0.5'], ['10.240.0.300'], [], 'x', [5]];
    case 'ipam.gateway': return ['10.240.0.1', '10.241.0.1', '10.240.0.256', ''];
    case 'ipam.interfacesFile': return [path.join(dir, 'if.json'), 'if.json', ''];
    case 'ipam': return [{ type: 'azure-vnet-ipam' }, null, 'azure-vnet-ipam', [], {}];
    case 'prevResult': return [null, 'x', 5, [], {}, { cniVersion: '1.0.0' }, { cniVersion: '0.2.0', ip4: { ip: '10.0.0.2/24' } }, { ips: 'x' }];
    default: return [];
  }
}

const KEYS = [
  'cniVersion', 'name', 'type', 'mode', 'bridge', 'master', 'logLevel', 'dataplane', 'dataplaneFallback', 'maxPods', 'stateDir',
  'logFile', 'daemonSocket', 'bpfRoot', 'vnetCidrs', 'capabilities', 'runtimeConfig', 'ipam', 'ipam.type', 'ipam.environment',
  'ipam.wireserverUrl', 'ipam.wireserverTimeoutMs', 'ipam.subnet', 'ipam.addresses', 'ipam.gateway', 'ipam.interfacesFile', 'prevResult',
];

function setKey(obj: Record<string, unknown>, key: string, value: unknown): void {
  const [head, sub] = key.split('.') as [string, string | undefined];
  if (sub === undefined) {
    if (value === undefined) delete obj[head];
    else obj[head] = value;
    return;
  }
  const ipam = typeof obj[head] === 'object' && obj[head] !== null && !Array.isArray(obj[head]) ? { ...(obj[head] as Record<string, unknown>) } : {};
  if (value === undefined) delete ipam[sub];
  else ipam[sub] = value;
  obj[head] = ipam;
}

function randomString(rng: Rng, max = 24): string {
  const alphabet = 'abcXYZ019_.-/: \t\n\\"\u0000é🙂=;';
  let s = '';
  const n = rng.int(max + 1);
  for (let i = 0; i < n; i++) s += alphabet[rng.int(alphabet.length)] ?? 'a';
  return s;
}

export class CniInputGenerator {
  constructor(private readonly rng: Rng, private readonly dir: string, private readonly existingNetns: string) {}

  private env(command: string): { env: Record<string, string>; tags: string[] } {
    const r = this.rng;
    const env: Record<string, string> = { CNI_COMMAND: command, CNI_CONTAINERID: 'abc123', CNI_NETNS: this.existingNetns, CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' };
    const tags: string[] = [];
    if (r.chance(0.3)) {
      const which = r.pick(['CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_NETNS', 'CNI_ARGS', 'CNI_COMMAND', 'CNI_PATH'] as const);
      tags.push(`env:${which}`);
      const values: Record<typeof which, string[]> = {
        CNI_CONTAINERID: ['', '../../etc/passwd', '..', 'a/b', 'ok-id.1_2', 'x'.repeat(500), ' lead', 'a b', randomString(r)],
        CNI_IFNAME: ['', 'eth1', 'a'.repeat(15), 'a'.repeat(16), '.', '..', 'eth/0', 'eth:0', 'eth 0', 'é'.repeat(8), randomString(r, 18)],
        CNI_NETNS: ['', 'relative/ns', path.join(this.dir, 'no-such-netns'), this.existingNetns, randomString(r)],
        CNI_ARGS: ['', 'K8S_POD_NAME=p;K8S_POD_NAMESPACE=ns', 'FOO=1', 'IgnoreUnknown=1;FOO=1', 'IgnoreUnknown=maybe', '=x', 'novalue', 'K8S_POD_NAME=a=b;', 'bad key=1', randomString(r)],
        CNI_COMMAND: ['', 'add', 'ADD ', 'DELETE', randomString(r, 6)],
        CNI_PATH: ['', '/opt/cni/bin:/usr/lib/cni', '::', randomString(r)],
      };
      env[which] = r.pick(values[which]);
    }
    return { env, tags };
  }

  next(): CniInput {
    const r = this.rng;
    const plugin: Plugin = r.chance(0.8) ? 'azure-vnet' : 'azure-vnet-ipam';
    const command = r.pick([...COMMANDS, 'ADD', 'ADD', 'DEL']);
    const { env, tags } = this.env(command);
    const shape = r.int(100);
    let stdin: string;
    if (shape < 8) {
      stdin = r.pick(['', ' \n', 'null', '[]', '42', '"str"', '{', '{"cniVersion":"1.0.0"', '{"a":1}{"b":2}', '\ufeff{}', r.bytes(r.int(64)).toString('latin1')]);
      tags.push('stdin:not-an-object');
    } else if (shape < 10) {
      stdin = JSON.stringify({ cniVersion: '1.0.0', name: 'azure', type: 'azure-vnet', pad: 'x'.repeat(MAX_STDIN) });
      tags.push('stdin:oversized');
    } else if (shape < 12) {
      const depth = r.range(100, 5000);
      stdin = `{"cniVersion":"1.1.0","name":"azure","type":"azure-vnet","deep":${'['.repeat(depth)}${']'.repeat(depth)}}`;
      tags.push('stdin:deep-nesting');
    } else {
      const version = r.pick(VERSIONS);
      const conf: Record<string, unknown> = structuredClone(r.pick(seedConfigs(this.dir, version)));
      const n = shape < 25 ? 0 : r.range(1, 3);
      for (let i = 0; i < n; i++) {
        const key = r.pick(KEYS);
        const value = r.chance(0.8) ? r.pick(candidates(key, this.dir)) : r.chance(0.5) ? r.pick(JUNK) : randomString(r);
        setKey(conf, key, value);
        tags.push(`conf:${key}`);
      }
      if (command === 'GC' && r.chance(0.5)) {
        conf['cni.dev/valid-attachments'] = r.pick([[], [{ containerID: 'a', ifname: 'eth0' }], [{ containerID: '' }], 'x', [5], null]);
        tags.push('conf:valid-attachments');
      }
      stdin = JSON.stringify(conf);
      if (r.chance(0.05)) {
        // An own "__proto__" key (JSON.parse makes it a plain property): must not pollute anything.
        stdin = `{"__proto__":{"polluted":true,"stateDir":"relative"},${stdin.slice(1)}`;
        tags.push('conf:__proto__');
      }
      if (r.chance(0.05)) {
        stdin = stdin.slice(0, r.int(stdin.length));
        tags.push('stdin:truncated');
      }
    }
    return { plugin, env, stdin, kind: tags.join('+') || 'seed' };
  }
}

// ---- The oracle ------------------------------------------------------------

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const absent = (v: unknown): boolean => v === undefined || v === null;
const isAbsPath = (v: unknown): boolean => typeof v === 'string' && v.startsWith('/') && !v.includes('\0');
const optAbsPath = (v: unknown): boolean => absent(v) || isAbsPath(v);

function ipv4(s: unknown): number[] | undefined {
  if (typeof s !== 'string' || !/^\d{1,3}(\.\d{1,3}){3}$/.test(s)) return undefined;
  const parts = s.split('.').map(Number);
  return parts.every((p, i) => p <= 255 && String(p) === s.split('.')[i]) ? parts : undefined;
}
function cidr(s: unknown): { net: number; len: number } | undefined {
  if (typeof s !== 'string') return undefined;
  const [a, l, extra] = s.trim().split('/');
  const ip = ipv4(a);
  if (!ip || extra !== undefined || l === undefined || !/^\d{1,2}$/.test(l) || Number(l) > 32) return undefined;
  const len = Number(l);
  const mask = len === 0 ? 0 : (~0 << (32 - len)) >>> 0;
  return { net: ((((ip[0]! << 24) | (ip[1]! << 16) | (ip[2]! << 8) | ip[3]!) >>> 0) & mask) >>> 0, len };
}
function inCidr(ip: unknown, c: { net: number; len: number }): boolean {
  const p = ipv4(ip);
  if (!p) return false;
  const n = ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
  const mask = c.len === 0 ? 0 : (~0 << (32 - c.len)) >>> 0;
  return ((n & mask) >>> 0) === c.net;
}
const ifname = (v: unknown): boolean => absent(v) || v === '' || (typeof v === 'string' && Buffer.byteLength(v) <= 15 && v !== '.' && v !== '..' && !/[/:\s]/u.test(v));
const oneOf = (v: unknown, list: string[]): boolean => absent(v) || (typeof v === 'string' && list.includes(v));
const intIn = (v: unknown, min: number, max: number): boolean => absent(v) || (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max);
const optObj = (v: unknown): boolean => absent(v) || isObj(v);
const cmp = (a: string, b: string): number => {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  return 0;
};

function validIpam(v: unknown, add: boolean): boolean {
  if (absent(v)) return true;
  if (!isObj(v)) return false;
  if (!absent(v.type) && typeof v.type !== 'string') return false;
  // Another IPAM type (and upstream's ipam.mode/ipAddress) is refused on ADD only: other verbs clean up.
  if (add && !absent(v.type) && v.type !== '' && v.type !== 'azure-vnet-ipam') return false;
  if (add && ((!absent(v.mode) && v.mode !== '') || (!absent(v.ipAddress) && v.ipAddress !== ''))) return false;
  if (!oneOf(v.environment, ['azure', 'fileIpam', 'static', 'kubernetes'])) return false;
  if (!absent(v.wireserverUrl)) {
    if (typeof v.wireserverUrl !== 'string' || !/^https?:\/\/[^/\s]+/.test(v.wireserverUrl)) return false;
  }
  if (!intIn(v.wireserverTimeoutMs, 1, 300_000)) return false;
  if (!optAbsPath(v.interfacesFile)) return false;
  const subnet = absent(v.subnet) || v.subnet === '' ? undefined : cidr(v.subnet);
  if (!absent(v.subnet) && v.subnet !== '' && !subnet) return false;
  if (!absent(v.addresses) && (!Array.isArray(v.addresses) || !v.addresses.every((a) => ipv4(a)))) return false;
  if (!absent(v.gateway) && v.gateway !== '') {
    if (!ipv4(v.gateway) || (subnet && !inCidr(v.gateway, subnet))) return false;
  }
  if (v.environment === 'static') {
    const addrs = v.addresses as unknown[] | undefined;
    if (!subnet || !addrs || addrs.length === 0) return false;
    if (!addrs.every((a) => inCidr(a, subnet)) || new Set(addrs).size !== addrs.length) return false;
  }
  return true;
}

function validPrevResult(v: unknown): boolean {
  // As libcni, a prevResult is parsed against the config's version: an object
  // with no result fields is an empty result. 0.1/0.2 shapes (ip4/ip6) are
  // refused. The fuzzer never sends populated interfaces/ips/routes/dns.
  if (absent(v)) return true;
  if (!isObj(v) || 'ip4' in v || 'ip6' in v) return false;
  return ['interfaces', 'ips', 'routes', 'dns'].every((k) => absent(v[k]));
}

/** Upstream keys that select behaviour vnet-cni lacks: refused on ADD (docs/cni.md "Upstream keys"). */
function refusedUpstream(c: Record<string, unknown>): boolean {
  const set = (v: unknown): boolean => !absent(v) && v !== '' && v !== false && !(Array.isArray(v) && v.length === 0);
  if (!absent(c.mode) && !['bridge', 'transparent'].includes(c.mode as string)) return true;
  if (c.multiTenancy === true || c.enableSnatOnHost === true) return true;
  if (set(c.executionMode) || set(c.ipv6Mode) || set(c.infraVnetAddressSpace) || set(c.podNamespaceForDualNetwork)) return true;
  return set(c.wireServerIP) && c.wireServerIP !== '168.63.129.16';
}

function validConfig(c: Record<string, unknown>, plugin: Plugin, add: boolean): boolean {
  if (typeof c.name !== 'string' || !NAME_RE.test(c.name)) return false;
  if (typeof c.type !== 'string' || c.type === '') return false;
  const mainKeys = !(plugin === 'azure-vnet-ipam' && c.type !== 'azure-vnet');
  if (mainKeys) {
    if (add && refusedUpstream(c)) return false;
    if (!oneOf(c.dataplane, ['iptables', 'bridge-iptables', 'ebpf'])) return false;
    if (!absent(c.dataplaneFallback) && typeof c.dataplaneFallback !== 'boolean') return false;
    if (!ifname(c.bridge) || !ifname(c.master)) return false;
    if (!absent(c.vnetCidrs) && c.vnetCidrs !== '') {
      const items = typeof c.vnetCidrs === 'string' ? c.vnetCidrs.split(',') : Array.isArray(c.vnetCidrs) ? c.vnetCidrs : undefined;
      if (!items || !items.every((i) => cidr(i))) return false;
    }
    if (!optAbsPath(c.bpfRoot)) return false;
  }
  if (!absent(c.logLevel) && (typeof c.logLevel !== 'string' || !['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].includes(c.logLevel.toLowerCase()))) return false;
  if (!intIn(c.maxPods, 1, 250)) return false;
  if (!optAbsPath(c.logFile) || !optAbsPath(c.stateDir) || !optAbsPath(c.daemonSocket)) return false;
  if (!optObj(c.capabilities) || !optObj(c.runtimeConfig)) return false;
  return validIpam(c.ipam, add) && validPrevResult(c.prevResult);
}

function validAttachments(c: Record<string, unknown>): boolean {
  const key = c['cni.dev/valid-attachments'] !== undefined ? 'cni.dev/valid-attachments' : 'cni.dev/attachments';
  const list = c[key];
  if (absent(list)) return true;
  return Array.isArray(list) && list.every((a) => isObj(a) && typeof a.containerID === 'string' && a.containerID !== '' && typeof a.ifname === 'string' && a.ifname !== '');
}

function validCniArgs(s: string): boolean {
  const known = new Set(['IgnoreUnknown', 'K8S_POD_NAME', 'K8S_POD_NAMESPACE', 'K8S_POD_INFRA_CONTAINER_ID', 'K8S_POD_UID']);
  const keys: Record<string, string> = {};
  for (const seg of s.split(';')) {
    if (seg === '') continue;
    const eq = seg.indexOf('=');
    if (eq <= 0) return false;
    const k = seg.slice(0, eq);
    if (!/^[A-Za-z0-9_.-]+$/.test(k)) return false;
    keys[k] = seg.slice(eq + 1);
  }
  const ig = keys.IgnoreUnknown;
  if (ig !== undefined && !['1', '0', 'true', 'false', 'True', 'False'].includes(ig)) return false;
  if (ig === '1' || ig === 'true' || ig === 'True') return true;
  return Object.keys(keys).every((k) => known.has(k));
}

export type Verdict = { valid: true; command: string } | { valid: false };

/** Is this call valid per docs/cni.md? `netnsExists` answers for CNI_NETNS paths. */
export function judge(input: CniInput, netnsExists: (p: string) => boolean): Verdict {
  const command = input.env.CNI_COMMAND ?? '';
  if (!(COMMANDS as readonly string[]).includes(command)) return { valid: false };
  if (command === 'VERSION') return { valid: true, command };
  if (Buffer.byteLength(input.stdin) > MAX_STDIN) return { valid: false };
  let c: unknown;
  try {
    c = JSON.parse(input.stdin);
  } catch {
    return { valid: false };
  }
  if (!isObj(c)) return { valid: false };
  if (depthOf(c) > MAX_DEPTH) return { valid: false };
  const version = c.cniVersion;
  if (typeof version !== 'string' || !(VERSIONS as readonly string[]).includes(version)) return { valid: false };
  if (command === 'CHECK' && cmp(version, '0.4.0') < 0) return { valid: false };
  if ((command === 'GC' || command === 'STATUS') && cmp(version, '1.1.0') < 0) return { valid: false };
  if (command === 'ADD' || command === 'DEL' || command === 'CHECK') {
    const id = input.env.CNI_CONTAINERID ?? '';
    const ifn = input.env.CNI_IFNAME ?? '';
    const ns = input.env.CNI_NETNS ?? '';
    if (!NAME_RE.test(id)) return { valid: false };
    if (ifn === '' || !ifname(ifn)) return { valid: false };
    if (ns === '' && command !== 'DEL') return { valid: false };
    if (ns !== '' && !ns.startsWith('/')) return { valid: false };
    if (command === 'ADD' && !netnsExists(ns)) return { valid: false };
    if (!validCniArgs(input.env.CNI_ARGS ?? '')) return { valid: false };
  }
  if (!validConfig(c, input.plugin, command === 'ADD')) return { valid: false };
  if (command === 'GC' && !validAttachments(c)) return { valid: false };
  return { valid: true, command };
}
