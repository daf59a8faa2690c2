// IPv4 CIDR arithmetic for the policy compiler: parse, canonicalize, contain,
// order. Addresses are unsigned 32-bit numbers; a CIDR is [base, prefix].
// IPv6 would get its own twin of this module (bigint), the callers already
// branch on the family.

export interface Cidr4 {
  /** Network address (host bits cleared), unsigned. */
  base: number;
  prefix: number;
}

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** Parse a dotted quad; undefined if it is not one. */
export function parseIpv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!OCTET.test(p)) return undefined;
    n = n * 256 + Number(p);
  }
  return n;
}

export function formatIpv4(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Is this text an IPv6 address or CIDR? (Not malformed: just not this node's family.) */
export function isIpv6Text(text: string): boolean {
  return text.includes(':');
}

/**
 * Parse "a.b.c.d/n". Host bits are cleared ("10.0.0.1/24" is 10.0.0.0/24), as
 * the API server accepted such values before it validated them strictly.
 */
export function parseCidr4(text: string): Cidr4 | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const ip = parseIpv4(text.slice(0, slash));
  const p = text.slice(slash + 1);
  if (ip === undefined || !/^(3[0-2]|[12]?\d)$/.test(p)) return undefined;
  const prefix = Number(p);
  return { base: (ip & mask(prefix)) >>> 0, prefix };
}

export function formatCidr4(c: Cidr4): string {
  return `${formatIpv4(c.base)}/${c.prefix}`;
}

export function hostCidr4(ip: number): Cidr4 {
  return { base: ip >>> 0, prefix: 32 };
}

export function cidrContainsIp(c: Cidr4, ip: number): boolean {
  return ((ip & mask(c.prefix)) >>> 0) === c.base;
}

/** outer ⊇ inner */
export function cidrContains(outer: Cidr4, inner: Cidr4): boolean {
  return outer.prefix <= inner.prefix && cidrContainsIp(outer, inner.base);
}

/** CIDRs are nested or disjoint: they overlap iff one contains the other. */
export function cidrOverlaps(a: Cidr4, b: Cidr4): boolean {
  return cidrContains(a, b) || cidrContains(b, a);
}

/** Numeric order: address, then shorter prefix first. */
export function compareCidr4(a: Cidr4, b: Cidr4): number {
  return a.base - b.base || a.prefix - b.prefix;
}
