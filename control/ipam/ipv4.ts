// IPv4, CIDR and MAC helpers for IPAM. Addresses are handled as unsigned
// 32-bit numbers so subnet membership and ordering are exact; every parser
// returns undefined on bad input and the caller names the source. The IPv4
// primitives are cni/ip.ts's (the project's one IPv4 module), re-exported for
// IPAM's callers; what is here is IPAM's own (pool bounds, MACs, ordering).
import { parseIPv4, prefixMask, type Cidr } from '../../cni/ip.js';

export { cidrContains, formatIPv4, isIPv4, parseCidr, parseIPv4, prefixMask, type Cidr } from '../../cni/ip.js';

/** Subnets narrower than /30 leave no room for a gateway plus pods. */
export const MAX_POOL_PREFIX = 30;

export function broadcastOf(cidr: Cidr): number {
  return (cidr.network | ~prefixMask(cidr.prefixLength)) >>> 0;
}

/** Azure's convention: the gateway is the subnet's first address. */
export function firstHostOf(cidr: Cidr): number {
  return cidr.network + 1;
}

/**
 * Any common MAC spelling ('000D3AF9DCA6', '00:0d:3a:f9:dc:a6', '00-0D-3A-F9-DC-A6')
 * -> '00:0d:3a:f9:dc:a6'; undefined if it is not 6 hex octets.
 */
export function normaliseMac(text: string): string | undefined {
  if (typeof text !== 'string' || text.length > 17) return undefined;
  let hex: string;
  if (/^[0-9a-fA-F]{12}$/.test(text)) hex = text;
  else if (/^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$/.test(text)) hex = text.replace(/[:-]/g, '');
  else return undefined;
  hex = hex.toLowerCase();
  return hex.match(/../g)!.join(':');
}

/** Numeric order for dotted quads (both must be valid). */
export function compareIPv4(a: string, b: string): number {
  return parseIPv4(a)! - parseIPv4(b)!;
}
