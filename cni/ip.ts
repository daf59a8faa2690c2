// Address syntax checks for config and prevResult validation. Pure string
// work: no lookups, no kernel.
import { isIP, isIPv4 } from 'node:net';

export { isIPv4 };

/** Dotted quad to a 32-bit unsigned number (the caller checked isIPv4). */
export function ipv4ToNumber(ip: string): number {
  return ip.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

export function numberToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export interface Ipv4Cidr {
  /** The network address, host bits cleared. */
  network: string;
  prefix: number;
  /** Canonical text: network/prefix. */
  text: string;
}

/** Parse "a.b.c.d/n"; host bits are cleared (as net.ParseCIDR's network). Returns undefined if malformed. */
export function parseIpv4Cidr(text: string): Ipv4Cidr | undefined {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(text);
  if (!m || !isIPv4(m[1]!)) return undefined;
  const prefix = Number(m[2]);
  if (prefix > 32) return undefined;
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const network = numberToIpv4((ipv4ToNumber(m[1]!) & mask) >>> 0);
  return { network, prefix, text: `${network}/${prefix}` };
}

export function ipv4InCidr(ip: string, cidr: Ipv4Cidr): boolean {
  const mask = cidr.prefix === 0 ? 0 : (0xffffffff << (32 - cidr.prefix)) >>> 0;
  return ((ipv4ToNumber(ip) & mask) >>> 0) === ipv4ToNumber(cidr.network);
}

/** An address with a prefix length, IPv4 or IPv6 ("10.0.0.5/16", "fd00::5/64"), as CNI results carry. */
export function isIpWithPrefix(text: string): boolean {
  const slash = text.lastIndexOf('/');
  if (slash <= 0) return false;
  const family = isIP(text.slice(0, slash));
  const prefix = text.slice(slash + 1);
  if (family === 0 || !/^\d{1,3}$/.test(prefix)) return false;
  return Number(prefix) <= (family === 4 ? 32 : 128);
}

export function ipFamily(text: string): 4 | 6 | 0 {
  const slash = text.indexOf('/');
  return isIP(slash === -1 ? text : text.slice(0, slash)) as 4 | 6 | 0;
}
