// Strict IPv4, CIDR and MAC parsing for IPAM. Addresses are handled as
// unsigned 32-bit numbers so subnet membership and ordering are exact; every
// parser returns undefined on bad input and the caller names the source.

/**
 * '10.240.0.5' -> 0x0af00005, or undefined if not a canonical dotted quad.
 * A hand-written scan: this runs for every address of every pool refresh and
 * state load, and split()+regex cost ~1 us per address.
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
      // no leading zeros: "010" is ambiguous (octal to some tools)
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

export interface Cidr {
  /** network address as a number (host bits cleared) */
  network: number;
  prefixLength: number;
  /** canonical text, e.g. '10.240.0.0/16' */
  text: string;
}

/** Subnets narrower than /30 leave no room for a gateway plus pods. */
export const MAX_POOL_PREFIX = 30;

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

export function prefixMask(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}

export function cidrContains(cidr: Cidr, address: number): boolean {
  return ((address & prefixMask(cidr.prefixLength)) >>> 0) === cidr.network;
}

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
