// Spec versions: negotiation, VERSION output, and conversion between the
// internal result (always the 1.1.0 shape) and the version a runtime speaks.
import type { CniResult, Dns, Interface, IpConfig, Route } from './types.js';
import { IncompatibleVersionError, InvalidConfigError, VnetError } from './errors.js';
import type { CniCommand } from './env.js';
import { ipFamily, isIpWithPrefix } from './ip.js';
import { isIP } from 'node:net';
import { Fields, invalid, isObject } from './validate.js';

export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type SpecVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST_VERSION: SpecVersion = '1.1.0';

const VERSION_SYNTAX = /^\d+\.\d+\.\d+$/;

/** Numeric comparison of two x.y.z versions. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export function isSupportedVersion(v: unknown): v is SpecVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** The version to print on an error: the one asked for if it looks like a version, else the newest. */
export function errorVersion(requested: unknown): string {
  return typeof requested === 'string' && VERSION_SYNTAX.test(requested) ? requested : LATEST_VERSION;
}

export function negotiateVersion(requested: unknown): SpecVersion {
  if (isSupportedVersion(requested)) return requested;
  const list = SUPPORTED_VERSIONS.join(', ');
  if (requested === undefined) throw new IncompatibleVersionError(`cniVersion is missing from the network configuration; supported: ${list}`);
  const shown = typeof requested === 'string' ? JSON.stringify(requested) : `${JSON.stringify(requested)} (not a string)`;
  throw new IncompatibleVersionError(`cniVersion ${shown} is not supported; supported: ${list}`, {
    details: `supportedVersions: ${list}`,
  });
}

/** The verbs newer than a version's spec: CHECK came in 0.4.0, GC and STATUS in 1.1.0. */
export function requireVerbSupport(command: CniCommand, version: SpecVersion): void {
  const since = command === 'CHECK' ? '0.4.0' : command === 'GC' || command === 'STATUS' ? '1.1.0' : undefined;
  if (since !== undefined && compareVersions(version, since) < 0) {
    throw new IncompatibleVersionError(`config version ${version} does not allow ${command}; it needs cniVersion ${since} or newer`);
  }
}

/** VERSION's output: the requested version echoed (spec 1.1.0), or the newest if none was given. */
export function versionInfo(requested: unknown): { cniVersion: string; supportedVersions: string[] } {
  return { cniVersion: errorVersion(requested), supportedVersions: [...SUPPORTED_VERSIONS] };
}

// ---- result: internal (1.1.0) -> requested version ----

function sandboxIndex(interfaces: Interface[]): number | undefined {
  const i = interfaces.findIndex((itf) => itf.sandbox !== undefined && itf.sandbox !== '');
  return i === -1 ? undefined : i;
}

/**
 * The result as `version` prints it, keys in libcni's order. Every sandbox
 * interface must carry a MAC, and every IP names its interface when there are
 * interfaces at all (an IPAM-only result has none).
 */
export function formatResult(result: CniResult, version: SpecVersion): Record<string, unknown> {
  const legacy = compareVersions(version, '1.0.0') < 0;
  const interfaces = result.interfaces ?? [];
  for (const itf of interfaces) {
    if (itf.sandbox && !itf.mac) throw new VnetError(`agent result: sandbox interface ${itf.name} has no mac`);
  }
  const defaultIndex = sandboxIndex(interfaces);
  const out: Record<string, unknown> = { cniVersion: version };
  if (result.interfaces !== undefined) {
    out.interfaces = interfaces.map((itf) => ({
      name: itf.name,
      mac: itf.mac,
      ...(version === '1.1.0' && itf.mtu !== undefined ? { mtu: itf.mtu } : {}),
      ...(itf.sandbox !== undefined ? { sandbox: itf.sandbox } : {}),
    }));
  }
  if (result.ips !== undefined) out.ips = result.ips.map((ip) => {
    const index = ip.interface ?? defaultIndex;
    if (index !== undefined && (index < 0 || index >= interfaces.length)) {
      throw new VnetError(`agent result: ip ${ip.address} names interface ${index}, but there are ${interfaces.length}`);
    }
    return {
      ...(legacy ? { version: ipFamily(ip.address) === 6 ? '6' : '4' } : {}),
      ...(index !== undefined ? { interface: index } : {}),
      address: ip.address,
      ...(ip.gateway !== undefined ? { gateway: ip.gateway } : {}),
    };
  });
  if (result.routes !== undefined) out.routes = result.routes.map((r) => ({ dst: r.dst, ...(r.gw !== undefined ? { gw: r.gw } : {}) }));
  if (result.dns !== undefined) out.dns = result.dns;
  return out;
}

// ---- prevResult: any supported version -> internal ----

export function parseDns(v: unknown, where: string): Dns {
  if (!isObject(v)) throw invalid(where, 'an object', v);
  const f = new Fields(v, `${where}.`);
  const dns: Dns = {};
  const nameservers = f.stringList('nameservers');
  if (nameservers) dns.nameservers = nameservers;
  const domain = f.string('domain');
  if (domain !== undefined) dns.domain = domain;
  const search = f.stringList('search');
  if (search) dns.search = search;
  const options = f.stringList('options');
  if (options) dns.options = options;
  return dns;
}

function ipAddress(f: Fields, key: string): string | undefined {
  const v = f.string(key);
  if (v === undefined || v === '') return undefined;
  if (isIP(v) === 0) throw invalid(f.name(key), 'an IP address', v);
  return v;
}

function ipWithPrefix(f: Fields, key: string, example: string): string {
  const v = f.string(key);
  if (v === undefined || !isIpWithPrefix(v)) throw invalid(f.name(key), `an address with a prefix length, e.g. ${example}`, v);
  return v;
}

function parseInterface(v: unknown, where: string): Interface {
  if (!isObject(v)) throw invalid(where, 'an object', v);
  const f = new Fields(v, `${where}.`);
  const name = f.nonEmpty('name');
  if (name === undefined) throw invalid(f.name('name'), 'a non-empty string', undefined);
  const itf: Interface = { name, mac: f.string('mac') ?? '' };
  const mtu = f.integer('mtu', 0, 0xffff);
  if (mtu !== undefined) itf.mtu = mtu;
  const sandbox = f.string('sandbox');
  if (sandbox !== undefined) itf.sandbox = sandbox;
  return itf;
}

function parseIpConfig(v: unknown, where: string, interfaceCount: number): IpConfig {
  if (!isObject(v)) throw invalid(where, 'an object', v);
  const f = new Fields(v, `${where}.`);
  const ip: IpConfig = { address: ipWithPrefix(f, 'address', '10.240.0.5/16') };
  const gateway = ipAddress(f, 'gateway');
  if (gateway !== undefined) ip.gateway = gateway;
  if (f.has('interface')) {
    if (interfaceCount === 0) throw invalid(f.name('interface'), 'absent when there are no interfaces', v.interface);
    ip.interface = f.integer('interface', 0, interfaceCount - 1);
  }
  return ip;
}

function parseRoute(v: unknown, where: string): Route {
  if (!isObject(v)) throw invalid(where, 'an object', v);
  const f = new Fields(v, `${where}.`);
  const route: Route = { dst: ipWithPrefix(f, 'dst', '0.0.0.0/0') };
  const gw = ipAddress(f, 'gw');
  if (gw !== undefined) route.gw = gw;
  return route;
}

function list(v: unknown, where: string): unknown[] {
  if (!Array.isArray(v)) throw invalid(where, 'a list', v);
  return v;
}

/**
 * A prevResult of any supported version in the internal shape. 0.3.x/0.4.0
 * entries carry `version` ("4"/"6"), which is dropped; 0.1/0.2 results
 * (ip4/ip6 objects) are refused because no supported config version yields them.
 */
export function parsePrevResult(v: unknown): CniResult {
  if (!isObject(v)) throw invalid('prevResult', 'an object', v);
  if ('ip4' in v || 'ip6' in v) {
    throw new InvalidConfigError('prevResult is in the 0.1.0/0.2.0 shape (ip4/ip6); supported results are 0.3.0 and newer');
  }
  const result: CniResult = { cniVersion: LATEST_VERSION };
  if (v.interfaces != null) result.interfaces = list(v.interfaces, 'prevResult.interfaces').map((x, i) => parseInterface(x, `prevResult.interfaces[${i}]`));
  const count = result.interfaces?.length ?? 0;
  if (v.ips != null) result.ips = list(v.ips, 'prevResult.ips').map((x, i) => parseIpConfig(x, `prevResult.ips[${i}]`, count));
  if (v.routes != null) result.routes = list(v.routes, 'prevResult.routes').map((x, i) => parseRoute(x, `prevResult.routes[${i}]`));
  if (v.dns != null) result.dns = parseDns(v.dns, 'prevResult.dns');
  return result;
}
