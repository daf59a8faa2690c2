// IPv4 arithmetic for the lab spec: addresses as unsigned 32-bit numbers.
// (control/ipam has its own; the lab keeps a copy so it never imports product code.)
import { LabSpecError } from './errors.js';

const DOTTED = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

export function isIpv4(text: string): boolean {
  const m = DOTTED.exec(text);
  return m !== null && m.slice(1).every((octet) => Number(octet) <= 255 && (octet === '0' || !octet.startsWith('0')));
}

export function parseIpv4(text: string, what = 'address'): number {
  if (typeof text !== 'string' || !isIpv4(text)) throw new LabSpecError(`${what}: '${String(text)}' is not an IPv4 address`);
  return text.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

export function formatIpv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join('.');
}

export interface Cidr {
  network: number;
  prefixLen: number;
  /** number of addresses in the block */
  size: number;
}

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
