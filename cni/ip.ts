// The project's one IPv4 helper module (everything may import cni/): strict
// dotted quads as unsigned 32-bit numbers, CIDRs, wire bytes, and the address
// syntax checks for config and prevResult validation. Pure: no lookups, no
// kernel. control/ipam/ipv4.ts, control/dataplane/ebpf/layouts.ts and
// lab/ipv4.ts build on it.
import { isIP } from 'node:net';

/**
 * '10.240.0.5' -> 0x0af00005, or undefined if not a canonical dotted quad (no
 * leading zeros: "010" is octal to some tools). A hand-written scan: IPAM runs
 * this for every address of every pool refresh and state load, and
 * split()+regex cost ~1 us per address.
 */
export function parseIPv4(text: string): number | undefined {
  if (typeof text !== 'string' || text.length < 7 || text.length > 15) return undefined;
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === 0x2e) {
      if (digits === 0 || dots === 3) return undefined;
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else if (code >= 0x30 && code <= 0x39) {
      if (digits === 1 && octet === 0) return undefined;
      octet = octet * 10 + (code - 0x30);
      if (++digits > 3 || octet > 255) return undefined;
    } else {
      return undefined;
    }
  }
  if (dots !== 3 || digits === 0) return undefined;
  return value * 256 + octet;
}

export function formatIPv4(value: number): string {
  return `${value >>> 24}.${(value >>> 16) & 255}.${(value >>> 8) & 255}.${value & 255}`;
}

export function isIPv4(text: string): boolean {
  return parseIPv4(text) !== undefined;
}

/** Dotted quad to a 32-bit unsigned number (the caller checked isIPv4). */
export function ipv4ToNumber(ip: string): number {
  return parseIPv4(ip) ?? Number.NaN;
}

export const numberToIpv4 = formatIPv4;

export function prefixMask(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}

export interface Cidr {
  /** network address as a number (host bits cleared) */
  network: number;
  prefixLength: number;
  /** canonical text, e.g. '10.240.0.0/16' */
  text: string;
}

/** '10.240.0.4/16' -> network 10.240.0.0/16 (host bits are cleared, as Go's net.ParseCIDR does). */
export function parseCidr(text: string): Cidr | undefined {
  if (typeof text !== 'string' || text.length > 18) return undefined;
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const address = parseIPv4(text.slice(0, slash));
  const lengthText = text.slice(slash + 1);
  if (address === undefined || !/^(3[0-2]|[12]?\d)$/.test(lengthText)) return undefined;
  const prefixLength = Number(lengthText);
  const network = (address & prefixMask(prefixLength)) >>> 0;
  return { network, prefixLength, text: `${formatIPv4(network)}/${prefixLength}` };
}

export function cidrContains(cidr: Cidr, address: number): boolean {
  return ((address & prefixMask(cidr.prefixLength)) >>> 0) === cidr.network;
}

/** The config validator's view of a CIDR: the network as text. */
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
  const address = m ? parseIPv4(m[1]!) : undefined;
  if (!m || address === undefined) return undefined;
  const prefix = Number(m[2]);
  if (prefix > 32) return undefined;
  const network = formatIPv4((address & prefixMask(prefix)) >>> 0);
  return { network, prefix, text: `${network}/${prefix}` };
}

export function ipv4InCidr(ip: string, cidr: Ipv4Cidr): boolean {
  return ((ipv4ToNumber(ip) & prefixMask(cidr.prefix)) >>> 0) === ipv4ToNumber(cidr.network);
}

/** 4 bytes in wire order, or undefined if `ip` is not a dotted quad. */
export function ipv4ToBytes(ip: string): Buffer | undefined {
  const n = parseIPv4(ip);
  if (n === undefined) return undefined;
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

export function bytesToIpv4(buf: Uint8Array, offset = 0): string {
  return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`;
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
