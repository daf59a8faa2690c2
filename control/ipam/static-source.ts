// The `static` pool source: the pod pool written in the conflist
// (ipam.addresses + ipam.subnet [+ ipam.gateway]). It is checked once, when
// the source is created, so a bad config fails as InvalidConfigError (code 7)
// instead of as a retryable source error. The pool matches any NIC.
import { InvalidConfigError, PoolSourceError } from '../errors.js';
import type { IpamConfig } from '../types.js';
import { MAX_POOL_PREFIX, broadcastOf, cidrContains, firstHostOf, formatIPv4, parseCidr, parseIPv4 } from './ipv4.js';
import { ANY_MAC, type NicPool, type PoolSource } from './types.js';

export class StaticSource implements PoolSource {
  readonly kind = 'static' as const;
  readonly pool: NicPool;

  constructor(cfg: Pick<IpamConfig, 'addresses' | 'subnet' | 'gateway'>) {
    this.pool = staticPool(cfg);
  }

  fetch(signal?: AbortSignal): Promise<NicPool[]> {
    if (signal?.aborted) return Promise.reject(new PoolSourceError('static pool: read aborted by the caller'));
    return Promise.resolve([{ ...this.pool, addresses: [...this.pool.addresses] }]);
  }
}

export function staticPool(cfg: Pick<IpamConfig, 'addresses' | 'subnet' | 'gateway'>): NicPool {
  const bad = (what: string): never => {
    throw new InvalidConfigError(`ipam (static): ${what}`);
  };
  if (typeof cfg.subnet !== 'string') return bad('"subnet" is required, e.g. "10.240.0.0/16"');
  const cidr = parseCidr(cfg.subnet);
  if (cidr === undefined) return bad(`subnet ${JSON.stringify(cfg.subnet)} is not an IPv4 CIDR`);
  if (cidr.prefixLength > MAX_POOL_PREFIX) bad(`subnet ${cidr.text} is too small for a pod pool (max /${MAX_POOL_PREFIX})`);
  const broadcast = broadcastOf(cidr);
  const reserved = (value: number): boolean => value === cidr.network || value === broadcast;

  let gateway = firstHostOf(cidr);
  if (cfg.gateway !== undefined) {
    const value = typeof cfg.gateway === 'string' ? parseIPv4(cfg.gateway) : undefined;
    if (value === undefined || !cidrContains(cidr, value) || reserved(value)) {
      bad(`gateway ${JSON.stringify(cfg.gateway)} is not a host address in ${cidr.text}`);
    }
    gateway = value!;
  }

  if (!Array.isArray(cfg.addresses) || cfg.addresses.length === 0) return bad('"addresses" must be a non-empty list of IPv4 addresses');
  const pool = new Set<number>();
  for (const text of cfg.addresses) {
    const value = typeof text === 'string' ? parseIPv4(text) : undefined;
    if (value === undefined) bad(`address ${JSON.stringify(text)} is not an IPv4 address`);
    if (!cidrContains(cidr, value!)) bad(`address ${text} is outside ${cidr.text}`);
    if (reserved(value!) || value === gateway) bad(`address ${text} is the network, gateway or broadcast address of ${cidr.text}`);
    pool.add(value!);
  }
  return {
    mac: ANY_MAC,
    primaryIp: '',
    subnet: cidr.text,
    prefixLength: cidr.prefixLength,
    gateway: formatIPv4(gateway),
    addresses: [...pool].sort((a, b) => a - b).map(formatIPv4),
  };
}
