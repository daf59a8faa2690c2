// The plugin's stdin: one plugin entry of a conflist as libcni passes it,
// validated into a NetConf. The original azure-vnet keys are accepted
// unchanged; keys nobody reads stay in `raw`. Defaults live here and nowhere
// else, so docs/cni.md can list them from one place.
import os from 'node:os';
import type { Attachment, DataplaneMode, IpamConfig, NetConf, PoolEnvironment } from './types.js';
import { DecodeError, InvalidConfigError } from './errors.js';
import { isIPv4, ipv4InCidr, parseIpv4Cidr, type Ipv4Cidr } from './ip.js';
import { parseDns } from './version.js';
import { Fields, invalid, isObject, type Json } from './validate.js';
import { refuseUnsupported, SUPPORTED_MODES } from './upstream.js';

export type PluginName = 'azure-vnet' | 'azure-vnet-ipam';

/** Larger stdin is refused: a real config is a few KiB. */
export const MAX_STDIN_BYTES = 1024 * 1024;
/** Deepest object/array nesting accepted on stdin (the top-level object is level 1). */
export const MAX_JSON_DEPTH = 64;

export const DEFAULTS = {
  mode: 'bridge',
  dataplane: 'iptables',
  bridge: 'azure0',
  master: 'eth0',
  maxPods: 250,
  logFile: { 'azure-vnet': '/var/log/azure-vnet.log', 'azure-vnet-ipam': '/var/log/azure-vnet-ipam.log' },
  logLevel: 'info',
  stateDir: '/var/lib/vnet-cni',
  bpfRoot: '/sys/fs/bpf/vnet-cni',
  ipamType: 'azure-vnet-ipam',
  environment: 'azure',
  wireserverUrl: 'http://168.63.129.16',
  wireserverTimeoutMs: 5000,
  interfacesFile: '/etc/kubernetes/interfaces.json',
} as const;

const DATAPLANES = ['iptables', 'bridge-iptables', 'ebpf'] as const;
const ENVIRONMENTS = ['azure', 'fileIpam', 'static', 'kubernetes'] as const satisfies readonly PoolEnvironment[];
const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const MAX_MAX_PODS = 250;

/** stdin bytes -> a JSON object. Empty, oversized or malformed input is a decode failure (code 6). */
export function decodeStdin(stdin: Buffer | string): Json {
  const bytes = typeof stdin === 'string' ? Buffer.from(stdin) : stdin;
  if (bytes.length > MAX_STDIN_BYTES) throw new DecodeError(`network configuration on stdin is larger than ${MAX_STDIN_BYTES} bytes`);
  const text = bytes.toString('utf8');
  if (text.trim() === '') throw new DecodeError('network configuration on stdin is empty; the runtime must pass the plugin config as JSON');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new DecodeError(`network configuration on stdin is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!isObject(value)) throw new DecodeError('network configuration on stdin must be a JSON object');
  if (nestingDepth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) {
    throw new DecodeError(`network configuration on stdin nests objects/arrays deeper than ${MAX_JSON_DEPTH} levels; a CNI config needs a handful`);
  }
  return value;
}

/**
 * How deeply arrays/objects nest in a parsed JSON value, counted without
 * recursion and given up past `limit`. JSON.parse takes any depth, but
 * JSON.stringify, the logger and the daemon's encoder recurse and throw
 * "Maximum call stack size exceeded" at a few thousand levels, which would
 * surface as an internal error instead of a decode failure.
 */
export function nestingDepth(value: unknown, limit: number): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    deepest = Math.max(deepest, depth);
    if (deepest > limit) return deepest;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
    }
  }
  return deepest;
}

function interfaceName(f: Fields, key: string, fallback: string): string {
  const v = f.string(key);
  if (v === undefined || v === '') return fallback;
  if (Buffer.byteLength(v) > 15 || v === '.' || v === '..' || /[/:\s]/u.test(v)) {
    throw invalid(f.name(key), "an interface name of 1-15 bytes without '/', ':' or whitespace", v);
  }
  return v;
}

function ipv4Cidr(f: Fields, key: string, value: unknown): Ipv4Cidr {
  const cidr = typeof value === 'string' ? parseIpv4Cidr(value.trim()) : undefined;
  if (cidr === undefined) throw invalid(f.name(key), 'an IPv4 CIDR such as 10.240.0.0/16', value);
  return cidr;
}

/** vnetCidrs: our list form, or the original's comma-separated string. */
function vnetCidrs(f: Fields): string[] {
  const v = f.obj.vnetCidrs;
  if (v === undefined || v === null || v === '') return [];
  const items = typeof v === 'string' ? v.split(',') : Array.isArray(v) ? v : undefined;
  if (items === undefined) throw invalid('vnetCidrs', 'a list of IPv4 CIDRs (or a comma-separated string of them)', v);
  return items.map((item, i) => ipv4Cidr(f, `vnetCidrs[${i}]`, item).text);
}

function ipv4List(f: Fields, key: string): string[] | undefined {
  const list = f.stringList(key);
  list?.forEach((ip, i) => {
    if (!isIPv4(ip)) throw invalid(`${f.name(key)}[${i}]`, 'an IPv4 address', ip);
  });
  return list;
}

function parseIpam(raw: unknown): IpamConfig {
  if (raw !== undefined && raw !== null && !isObject(raw)) throw invalid('ipam', 'an object', raw);
  const f = new Fields(raw ?? {}, 'ipam.');
  // Another type is refused on ADD (upstream.ts); a DEL/GC under such a conflist still cleans up.
  const type = f.string('type') || DEFAULTS.ipamType;
  const environment = f.oneOf('environment', ENVIRONMENTS) ?? DEFAULTS.environment;

  const url = f.string('wireserverUrl') ?? DEFAULTS.wireserverUrl;
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  if (parsed === undefined || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
    throw invalid('ipam.wireserverUrl', 'an http:// or https:// URL', url);
  }
  const ipam: IpamConfig = {
    type,
    environment,
    wireserverUrl: url.replace(/\/+$/, ''),
    wireserverTimeoutMs: f.integer('wireserverTimeoutMs', 1, 300_000) ?? DEFAULTS.wireserverTimeoutMs,
  };
  const interfacesFile = f.absolutePath('interfacesFile') ?? (environment === 'fileIpam' ? DEFAULTS.interfacesFile : undefined);
  if (interfacesFile !== undefined) ipam.interfacesFile = interfacesFile;

  const subnetText = f.string('subnet');
  const subnet = subnetText === undefined || subnetText === '' ? undefined : ipv4Cidr(f, 'subnet', subnetText);
  if (subnet) ipam.subnet = subnet.text;
  const addresses = ipv4List(f, 'addresses');
  if (addresses) ipam.addresses = addresses;
  const gateway = f.string('gateway');
  if (gateway !== undefined && gateway !== '') {
    if (!isIPv4(gateway)) throw invalid('ipam.gateway', 'an IPv4 address', gateway);
    if (subnet && !ipv4InCidr(gateway, subnet)) throw invalid('ipam.gateway', `an address inside ipam.subnet ${subnet.text}`, gateway);
    ipam.gateway = gateway;
  }
  if (environment === 'static') {
    if (!subnet) throw new InvalidConfigError("ipam.subnet is required when ipam.environment is 'static' (e.g. \"10.240.0.0/16\")");
    if (!addresses || addresses.length === 0) {
      throw new InvalidConfigError("ipam.addresses is required when ipam.environment is 'static': list the pod IPs, e.g. [\"10.240.0.5\"]");
    }
    const seen = new Set<string>();
    addresses.forEach((ip, i) => {
      if (!ipv4InCidr(ip, subnet)) throw invalid(`ipam.addresses[${i}]`, `an address inside ipam.subnet ${subnet.text}`, ip);
      if (seen.has(ip)) throw invalid(`ipam.addresses[${i}]`, 'listed once', ip);
      seen.add(ip);
    });
  }
  return ipam;
}

/** Keys only the azure-vnet plugin reads; skipped when azure-vnet-ipam serves another main plugin (bridge, macvlan...). */
function mainPluginKeys(f: Fields): Pick<NetConf, 'mode' | 'dataplane' | 'dataplaneFallback' | 'bridge' | 'master' | 'vnetCidrs' | 'bpfRoot'> {
  const dataplane = f.oneOf('dataplane', DATAPLANES) ?? DEFAULTS.dataplane;
  if (f.has('dns')) parseDns(f.obj.dns, 'dns');
  ipv4List(f, 'ipsToRouteViaHost');
  // An unsupported mode was refused already on ADD (upstream.ts); other verbs clean up whatever the node has.
  const mode = (SUPPORTED_MODES as readonly unknown[]).includes(f.obj.mode) ? (f.obj.mode as NetConf['mode']) : DEFAULTS.mode;
  return {
    mode,
    dataplane: (dataplane === 'bridge-iptables' ? 'iptables' : dataplane) satisfies DataplaneMode,
    dataplaneFallback: f.boolean('dataplaneFallback') ?? false,
    bridge: interfaceName(f, 'bridge', DEFAULTS.bridge),
    master: interfaceName(f, 'master', DEFAULTS.master),
    vnetCidrs: vnetCidrs(f),
    bpfRoot: f.absolutePath('bpfRoot') ?? DEFAULTS.bpfRoot,
  };
}

/**
 * Validate a decoded config for `plugin`. `cniVersion` must already have been
 * negotiated; prevResult is parsed separately (version.ts). `refuse`
 * (default true; ADD): refuse upstream keys that select behaviour vnet-cni
 * does not have (upstream.ts). DEL, CHECK, GC and STATUS pass false, so pods
 * added under an earlier conflist can still be removed under a refused one.
 */
export function parseNetConf(raw: Json, plugin: PluginName, opts: { refuse?: boolean } = {}): NetConf {
  const f = new Fields(raw);
  const name = raw.name;
  if (typeof name !== 'string' || !NETWORK_NAME.test(name)) {
    throw invalid('name', "a network name starting with a letter or digit, then letters, digits, '_', '.' or '-'", name);
  }
  const type = f.nonEmpty('type');
  if (type === undefined) throw invalid('type', 'the plugin name, e.g. azure-vnet', undefined);

  const servesOtherPlugin = plugin === 'azure-vnet-ipam' && type !== 'azure-vnet';
  if (opts.refuse !== false) refuseUnsupported(raw, !servesOtherPlugin);
  const main = servesOtherPlugin ? mainPluginKeys(new Fields({})) : mainPluginKeys(f);

  const logLevel = f.string('logLevel')?.toLowerCase() ?? DEFAULTS.logLevel;
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) throw invalid('logLevel', `one of ${LOG_LEVELS.join(', ')}`, f.obj.logLevel);
  const nodeName = f.string('nodeName') ?? os.hostname();
  if (nodeName === '' || nodeName.length > 253) throw invalid('nodeName', 'a node name of 1-253 characters', nodeName);

  f.object('capabilities');
  f.object('runtimeConfig');

  const config: NetConf = {
    cniVersion: String(raw.cniVersion),
    name,
    type,
    ...main,
    maxPods: f.integer('maxPods', 1, MAX_MAX_PODS) ?? DEFAULTS.maxPods,
    logFile: f.absolutePath('logFile') ?? DEFAULTS.logFile[plugin],
    logLevel,
    stateDir: f.absolutePath('stateDir') ?? DEFAULTS.stateDir,
    nodeName,
    ipam: parseIpam(raw.ipam),
    raw,
  };
  const daemonSocket = f.absolutePath('daemonSocket');
  if (daemonSocket !== undefined) config.daemonSocket = daemonSocket;
  return config;
}

/** GC's list of attachments still in use: cni.dev/valid-attachments (1.1.0), or the draft's cni.dev/attachments. */
export function parseAttachments(raw: Json): Attachment[] {
  const key = raw['cni.dev/valid-attachments'] !== undefined ? 'cni.dev/valid-attachments' : 'cni.dev/attachments';
  const list = raw[key];
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw invalid(key, 'a list of {"containerID", "ifname"} objects', list);
  return list.map((item, i) => {
    const where = `${key}[${i}]`;
    if (!isObject(item)) throw invalid(where, 'an object with containerID and ifname', item);
    const f = new Fields(item, `${where}.`);
    const containerId = f.nonEmpty('containerID');
    const ifName = f.nonEmpty('ifname');
    if (containerId === undefined) throw invalid(f.name('containerID'), 'a container ID', undefined);
    if (ifName === undefined) throw invalid(f.name('ifname'), 'an interface name', undefined);
    return { containerId, ifName };
  });
}
