// Pod-side plumbing shared by both dataplanes: the veth pair, the pod's
// address, its default route. The host side is the dataplane's business.
import { createHash, randomBytes } from 'node:crypto';
import { netlink, linkInfo, ipv4Addrs, ipv4Routes, listLinks } from './ip.js';
import { DataplaneError } from '../errors.js';
import type { EndpointPlan } from '../dataplane/types.js';

/** Deterministic host-side name: the same container+ifname always maps to the same veth. */
export function hostVethName(containerId: string, ifName: string): string {
  const digest = createHash('sha256').update(`${containerId}/${ifName}`).digest('hex');
  return `azv${digest.slice(0, 12)}`;
}

/** A random unicast, locally administered MAC. */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfe) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/**
 * Create the veth pair with the pod end created directly inside the pod netns
 * under its final name (one atomic request: both ends or neither).
 */
export async function createVethPair(ep: EndpointPlan): Promise<void> {
  await netlink([
    {
      op: 'linkAdd',
      kind: 'veth',
      name: ep.hostVeth,
      mtu: ep.mtu,
      mac: ep.hostMac,
      peer: { name: ep.ifName, mtu: ep.mtu, mac: ep.podMac, netns: ep.netns },
    },
  ]);
}

/** Address, link state and default route inside the pod (one netlink socket in the pod netns). */
export async function configurePodSide(ep: EndpointPlan): Promise<void> {
  if (ep.netMode === 'transparent') {
    // Upstream's routed pod: the subnet prefix on the address but no prefix route, the gateway
    // (169.254.1.1) reachable on the link and resolved statically to the host veth, so every
    // packet goes to the host and the pod never ARPs.
    await netlink(
      [
        { op: 'linkSet', dev: 'lo', up: true },
        { op: 'addrAdd', dev: ep.ifName, address: ep.ip, prefixLength: ep.prefixLength, noPrefixRoute: true, replace: true },
        { op: 'linkSet', dev: ep.ifName, up: true },
        { op: 'routeAdd', address: ep.gateway, dstLen: 32, dev: ep.ifName, replace: true },
        { op: 'neighAdd', dev: ep.ifName, address: ep.gateway, mac: ep.hostMac },
        { op: 'routeAdd', default: true, gateway: ep.gateway, dev: ep.ifName, replace: true },
      ],
      ep.netns,
    );
    return;
  }
  await netlink(
    [
      { op: 'linkSet', dev: 'lo', up: true },
      { op: 'addrAdd', dev: ep.ifName, address: ep.ip, prefixLength: ep.prefixLength, replace: true },
      { op: 'linkSet', dev: ep.ifName, up: true },
      { op: 'routeAdd', default: true, gateway: ep.gateway, dev: ep.ifName, onlink: true, replace: true },
    ],
    ep.netns,
  );
}

/** Delete the host end (the kernel removes the pod end with it). Succeeds if absent. */
export async function deleteHostVeth(hostVeth: string): Promise<void> {
  await netlink([{ op: 'linkDel', dev: hostVeth, missingOk: true }]);
}

/** CHECK: the pod interface exists, is up, has the IP and the default route. */
export async function checkPodSide(ep: EndpointPlan): Promise<void> {
  const link = await linkInfo(ep.ifName, ep.netns).catch(() => undefined);
  if (!link) throw new DataplaneError(`interface ${ep.ifName} not found in ${ep.netns}`);
  if (link.address.toLowerCase() !== ep.podMac.toLowerCase()) {
    throw new DataplaneError(`interface ${ep.ifName} in ${ep.netns} has MAC ${link.address}, expected ${ep.podMac}`);
  }
  const addrs = await ipv4Addrs(ep.ifName, ep.netns);
  if (!addrs.some((a) => a.local === ep.ip && a.prefixlen === ep.prefixLength)) {
    throw new DataplaneError(`interface ${ep.ifName} in ${ep.netns} lacks ${ep.ip}/${ep.prefixLength}`);
  }
  const routes = await ipv4Routes({}, ep.netns);
  if (!routes.some((r) => r.dst === 'default' && r.gateway === ep.gateway)) {
    throw new DataplaneError(`pod ${ep.netns} has no default route via ${ep.gateway}`);
  }
  if (ep.netMode === 'transparent') {
    const stray = routes.find((r) => r.dst !== 'default' && r.dst !== `${ep.gateway}/32` && r.dev === ep.ifName);
    if (stray) throw new DataplaneError(`pod ${ep.netns} has a route to ${stray.dst} on ${ep.ifName}; in transparent mode everything goes via ${ep.gateway}`);
    const [neighs] = (await netlink([{ op: 'neighList', dev: ep.ifName }], ep.netns)) as { dst: string; lladdr?: string; permanent: boolean }[][];
    const gw = neighs!.find((n) => n.dst === ep.gateway);
    if (!gw?.permanent || gw.lladdr?.toLowerCase() !== ep.hostMac.toLowerCase()) {
      throw new DataplaneError(`pod ${ep.netns} lacks the permanent neighbour ${ep.gateway} -> ${ep.hostMac} on ${ep.ifName}`);
    }
  }
  const host = await linkInfo(ep.hostVeth);
  if (!host) throw new DataplaneError(`host veth ${ep.hostVeth} not found`);
}

/** Host-side veths this plugin names (azv + 12 hex), whoever owns them. */
export async function listHostVeths(): Promise<string[]> {
  const links = await listLinks();
  return links.filter((l) => l.linkinfo?.info_kind === 'veth').map((l) => l.ifname).filter((n) => /^azv[0-9a-f]{12}$/.test(n));
}
