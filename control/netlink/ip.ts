// Links, IPv4 addresses, routes and sysctls through rtnetlink in the native
// addon (native/src/netlink.cc): no iproute2 process per change. The addon is
// required anyway (the store's flock lives there), so there is no `ip`
// fallback. A netns is given by path (CNI_NETNS is a path); the addon opens
// its netlink socket there and never leaves a thread in it.
import { native, isNativeError, type NetlinkOp } from '../../native/index.js';
import { DataplaneError } from '../errors.js';

export type { NetlinkOp } from '../../native/index.js';

export interface LinkInfo {
  ifindex: number;
  ifname: string;
  address: string;
  mtu: number;
  operstate: string;
  /** 'UP', 'LOWER_UP', 'LOOPBACK', 'NOARP' as set. */
  flags: string[];
  master?: string;
  link_netnsid?: number;
  linkinfo?: { info_kind?: string };
}

export interface AddrInfo {
  family: string;
  local: string;
  prefixlen: number;
  broadcast?: string;
  scope?: string;
}

export interface RouteInfo {
  /** 'default' or 'a.b.c.d/len'. */
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  scope?: string;
  prefsrc?: string;
  metric?: number;
  flags?: string[];
}

/** A kernel refusal of one netlink request: `errno`/`sysCode` ('EEXIST', 'ENODEV', ...) and the op that failed. */
export class NetlinkError extends DataplaneError {
  constructor(
    message: string,
    readonly errno: number,
    readonly sysCode: string,
    readonly op: string,
    options?: { cause?: unknown; details?: string },
  ) {
    super(message, options);
  }
}

/** Run ops in order in `netns` (path; default: ours). Throws NetlinkError at the first failure. */
export async function netlink(ops: NetlinkOp[], netns?: string): Promise<unknown[]> {
  try {
    return await native().netlink(ops, netns);
  } catch (err) {
    if (isNativeError(err)) throw new NetlinkError(`netlink ${err.message}`, err.errno, err.code, err.op, { cause: err });
    throw err;
  }
}

/** The link, or undefined if it does not exist. */
export async function linkInfo(name: string, netns?: string): Promise<LinkInfo | undefined> {
  const [link] = await netlink([{ op: 'linkGet', dev: name }], netns);
  return (link as LinkInfo | null) ?? undefined;
}

export async function listLinks(netns?: string): Promise<LinkInfo[]> {
  const [links] = await netlink([{ op: 'linkList' }], netns);
  return links as LinkInfo[];
}

export async function ipv4Addrs(dev: string, netns?: string): Promise<AddrInfo[]> {
  const [addrs] = await netlink([{ op: 'addrList', dev }], netns);
  return addrs as AddrInfo[];
}

/** IPv4 unicast routes of the main table, optionally only via `dev` or only the default. */
export async function ipv4Routes(filter: { dev?: string; default?: boolean } = {}, netns?: string): Promise<RouteInfo[]> {
  const [routes] = await netlink([{ op: 'routeList', ...filter }], netns);
  return routes as RouteInfo[];
}

/** A route op for `dst` ('default' or 'a.b.c.d/len' or a bare address = /32). */
export function routeTo(dst: string): { default: true } | { address: string; dstLen: number } {
  if (dst === 'default') return { default: true };
  const [address, len] = dst.split('/');
  return { address: address!, dstLen: len === undefined ? 32 : Number(len) };
}

/** Write a sysctl ('net.ipv4.ip_forward') of our netns, or of `netns` (path). */
export async function setSysctl(key: string, value: string, netns?: string): Promise<void> {
  await netlink([{ op: 'sysctl', key: key.replaceAll('.', '/'), value }], netns);
}

/** True if err is a NetlinkError with this errno name. */
export function isNetlinkError(err: unknown, sysCode?: string): err is NetlinkError {
  return err instanceof NetlinkError && (sysCode === undefined || err.sysCode === sysCode);
}
