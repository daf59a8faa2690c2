// IPv4 arithmetic for the lab spec: addresses as unsigned 32-bit numbers.
// The parsing is cni/ip.ts's (the project's one IPv4 module; lab/ may import
// cni/); what is here are the lab's throwing forms and its block arithmetic.
import { formatIPv4, isIPv4, parseIPv4 } from '../cni/ip.js';
import { LabSpecError } from './errors.js';

export const isIpv4 = (text: string): boolean => isIPv4(text);
export const formatIpv4 = (value: number): string => formatIPv4(value);

export function parseIpv4(text: string, what = 'address'): number {
  const value = parseIPv4(text);
  if (value === undefined) throw new LabSpecError(`${what}: '${String(text)}' is not an IPv4 address`);
  return value;
}

export interface Cidr {
  network: number;
  prefixLen: number;
  /** number of addresses in the block */
  size: number;
}

/** A prefix whose host bits are clear (the lab refuses sloppy specs rather than clearing them). */
export function parseCidr(text: string, what = 'prefix'): Cidr {
  const [addr, len, extra] = typeof text === 'string' ? text.split('/') : [];
  const prefixLen = Number(len);
  if (addr === undefined || len === undefined || extra !== undefined || !/^\d{1,2}$/.test(len) || prefixLen > 32) {
    throw new LabSpecError(`${what}: '${String(text)}' is not an IPv4 prefix like 10.240.0.0/16`);
  }
  const value = parseIpv4(addr, what);
  const size = 2 ** (32 - prefixLen);
  if (value % size !== 0) throw new LabSpecError(`${what}: '${text}' has host bits set (network is ${formatIpv4(value - (value % size))}/${prefixLen})`);
  return { network: value, prefixLen, size };
}

export function cidrContains(cidr: Cidr, ip: number): boolean {
  return ip >= cidr.network && ip < cidr.network + cidr.size;
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.network < b.network + b.size && b.network < a.network + a.size;
}

export function formatCidr(cidr: Cidr): string {
  return `${formatIpv4(cidr.network)}/${cidr.prefixLen}`;
}
