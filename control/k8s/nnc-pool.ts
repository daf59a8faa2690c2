// A NodeNetworkConfig object (the pool CRD) as a NicPool: the same checks the
// other sources make (addresses inside the subnet, never the gateway, the
// primary, the network or the broadcast address, no duplicates), so a bad
// object is rejected whole instead of half-applied.
import { PoolSourceError } from '../errors.js';
import { quote } from '../ipam/interfaces-doc.js';
import { MAX_POOL_PREFIX, broadcastOf, cidrContains, firstHostOf, formatIPv4, normaliseMac, parseCidr, parseIPv4 } from '../ipam/ipv4.js';
import { ANY_MAC, type NicPool } from '../ipam/types.js';

/** The spec of a NodeNetworkConfig (see docs/ipam.md). */
export interface NncSpec {
  primaryIP: string;
  macAddress?: string;
  subnet: string;
  gateway?: string;
  secondaryIPs: string[];
}

export interface NncObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; generation?: number; uid?: string };
  spec?: Partial<NncSpec>;
  status?: unknown;
}

export function poolFromNnc(obj: NncObject): NicPool {
  const origin = `NodeNetworkConfig ${obj.metadata.namespace ?? ''}/${obj.metadata.name}`;
  const bad = (what: string): never => {
    throw new PoolSourceError(`${origin}: ${what}`);
  };
  const spec = obj.spec;
  if (typeof spec !== 'object' || spec === null) return bad('spec is missing');
  if (typeof spec.subnet !== 'string') return bad('spec.subnet is missing');
  const cidr = parseCidr(spec.subnet);
  if (cidr === undefined) return bad(`spec.subnet ${quote(spec.subnet)} is not an IPv4 CIDR`);
  if (cidr.prefixLength > MAX_POOL_PREFIX) bad(`spec.subnet ${cidr.text} is too small for a pod pool (max /${MAX_POOL_PREFIX})`);
  const broadcast = broadcastOf(cidr);
  const hostAddress = (field: string, text: unknown): number => {
    const value = typeof text === 'string' ? parseIPv4(text) : undefined;
    if (value === undefined) return bad(`${field} ${quote(text)} is not an IPv4 address`);
    if (!cidrContains(cidr, value)) bad(`${field} ${String(text)} is outside ${cidr.text}`);
    if (value === cidr.network || value === broadcast) bad(`${field} ${String(text)} is the network or broadcast address of ${cidr.text}`);
    return value;
  };
  const primary = hostAddress('spec.primaryIP', spec.primaryIP);
  const gateway = spec.gateway === undefined || spec.gateway === '' ? firstHostOf(cidr) : hostAddress('spec.gateway', spec.gateway);
  if (gateway === primary) bad(`spec.primaryIP ${String(spec.primaryIP)} is the gateway`);
  let mac = ANY_MAC;
  if (spec.macAddress !== undefined && spec.macAddress !== '') {
    mac = normaliseMac(spec.macAddress) ?? bad(`spec.macAddress ${quote(spec.macAddress)} is not a MAC address`);
  }
  if (!Array.isArray(spec.secondaryIPs)) return bad('spec.secondaryIPs must be a list of IPv4 addresses');
  const pool = new Set<number>();
  spec.secondaryIPs.forEach((text, i) => {
    const value = hostAddress(`spec.secondaryIPs[${i}]`, text);
    if (value === gateway) bad(`spec.secondaryIPs[${i}] ${String(text)} is the gateway`);
    if (value === primary) bad(`spec.secondaryIPs[${i}] ${String(text)} is the primary IP`);
    if (pool.has(value)) bad(`spec.secondaryIPs[${i}] ${String(text)} appears twice`);
    pool.add(value);
  });
  return {
    mac,
    primaryIp: formatIPv4(primary),
    subnet: cidr.text,
    prefixLength: cidr.prefixLength,
    gateway: formatIPv4(gateway),
    addresses: [...pool].sort((a, b) => a - b).map(formatIPv4),
  };
}
