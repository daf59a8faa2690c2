// The NMAgent interface document, whatever it was read from (wireserver XML
// or an interfaces.json file), and its one conversion into NicPools. Both
// readers produce this raw model so the validation rules live in one place.
import { PoolSourceError } from '../errors.js';
import {
  MAX_POOL_PREFIX,
  broadcastOf,
  cidrContains,
  firstHostOf,
  formatIPv4,
  normaliseMac,
  parseCidr,
  parseIPv4,
} from './ipv4.js';
import { ANY_MAC, type NicPool } from './types.js';

export interface RawAddress {
  address: string;
  isPrimary: boolean;
}
export interface RawSubnet {
  prefix: string;
  addresses: RawAddress[];
}
export interface RawInterface {
  macAddress: string;
  isPrimary: boolean;
  subnets: RawSubnet[];
}

/**
 * One NicPool per (interface, subnet). Primary addresses belong to the VM and
 * are skipped; the rest form the pod pool. Anything malformed rejects the whole
 * document: a half-understood pool is worse than a retry.
 */
export function poolsFromInterfaces(interfaces: RawInterface[], origin: string): NicPool[] {
  const pools: NicPool[] = [];
  interfaces.forEach((nic, nicIndex) => {
    const where = `${origin}: Interface[${nicIndex}]`;
    const mac = nic.macAddress === ANY_MAC ? ANY_MAC : normaliseMac(nic.macAddress);
    if (mac === undefined) throw new PoolSourceError(`${where}: MacAddress ${quote(nic.macAddress)} is not a MAC address`);
    nic.subnets.forEach((subnet, subnetIndex) => {
      pools.push(poolFromSubnet(subnet, mac, `${where} IPSubnet[${subnetIndex}]`));
    });
  });
  return pools;
}

function poolFromSubnet(subnet: RawSubnet, mac: string, where: string): NicPool {
  const cidr = parseCidr(subnet.prefix);
  if (cidr === undefined) throw new PoolSourceError(`${where}: Prefix ${quote(subnet.prefix)} is not an IPv4 CIDR`);
  if (cidr.prefixLength > MAX_POOL_PREFIX) {
    throw new PoolSourceError(`${where}: Prefix ${cidr.text} is too small for a pod pool (max /${MAX_POOL_PREFIX})`);
  }
  const gateway = firstHostOf(cidr);
  const broadcast = broadcastOf(cidr);
  let primary: number | undefined;
  const pool = new Set<number>();
  subnet.addresses.forEach((entry, addressIndex) => {
    const at = `${where} IPAddress[${addressIndex}]`;
    const address = parseIPv4(entry.address);
    if (address === undefined) throw new PoolSourceError(`${at}: Address ${quote(entry.address)} is not an IPv4 address`);
    if (!cidrContains(cidr, address)) throw new PoolSourceError(`${at}: Address ${entry.address} is outside ${cidr.text}`);
    if (address === cidr.network || address === broadcast || address === gateway) {
      throw new PoolSourceError(`${at}: Address ${entry.address} is the network, gateway or broadcast address of ${cidr.text}`);
    }
    if (entry.isPrimary) primary ??= address;
    else pool.add(address);
  });
  if (primary !== undefined) pool.delete(primary);
  return {
    mac,
    primaryIp: primary === undefined ? '' : formatIPv4(primary),
    subnet: cidr.text,
    prefixLength: cidr.prefixLength,
    gateway: formatIPv4(gateway),
    addresses: [...pool].sort((a, b) => a - b).map(formatIPv4),
  };
}

/** Quote an untrusted value for an error message, bounded so hostile input cannot bloat logs. */
export function quote(value: unknown): string {
  const text = typeof value === 'string' ? value : String(value);
  return JSON.stringify(text.length > 64 ? `${text.slice(0, 64)}...` : text);
}
