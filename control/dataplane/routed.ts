// The routed endpoint: the one pod shape without a bridge, shared by the ebpf
// dataplane (both modes) and the iptables dataplane in transparent mode.
//
// Host side (this file): the host veth is up, answers ARP by proxy (so
// whatever the pod asks for resolves to the host veth's MAC and every pod
// frame reaches the host), and carries a /32 route to the pod, so the host
// stack (and the kernel's forwarding in iptables mode) delivers to the pod
// without any L2 segment shared with the fabric.
//
// Pod side (control/netlink/veth.ts): in transparent mode, upstream's shape:
// the address keeps the subnet prefix but gets no prefix route, a /32 link
// route to 169.254.1.1, a permanent neighbour entry 169.254.1.1 -> host veth
// MAC, and the default route via 169.254.1.1. Everything leaves through the
// host; the pod never ARPs. In ebpf bridge mode the pod keeps the bridge
// mode shape (subnet route, gateway = the subnet's .1) and proxy ARP answers.
import { readFile } from 'node:fs/promises';
import { netlink, linkInfo, ipv4Routes, type LinkInfo, type NetlinkOp } from '../netlink/ip.js';
import { DataplaneError } from '../errors.js';
import type { EndpointPlan, NodeNetwork } from './types.js';

/** The pod's gateway in transparent mode: link-local, never on the wire; the host veth's MAC answers it. */
export const ROUTED_GATEWAY = '169.254.1.1';

/**
 * Netlink ops that wire the host side of a routed endpoint (idempotent). The /32 route names the primary
 * IP as the source of the node's own packets to the pod (kubelet probes): the host veth has no address,
 * and the kernel would otherwise pick the first address of the first interface holding one, which may be
 * node-local DNS's 169.254.20.10.
 */
export function routedHostOps(ep: Pick<EndpointPlan, 'hostVeth' | 'ip'>, primaryIp: string): NetlinkOp[] {
  return [
    { op: 'sysctl', key: `net/ipv4/conf/${ep.hostVeth}/proxy_arp`, value: '1' },
    // proxy_delay 0: the kernel otherwise delays proxy ARP answers by up to 0.8 s.
    { op: 'sysctl', key: `net/ipv4/neigh/${ep.hostVeth}/proxy_delay`, value: '0' },
    { op: 'linkSet', dev: ep.hostVeth, up: true },
    { op: 'routeAdd', address: ep.ip, dstLen: 32, dev: ep.hostVeth, prefsrc: primaryIp, replace: true }, // scope link: no gateway
  ];
}

/** Wire the host side of a routed endpoint. The route and the sysctls go with the veth on DEL. */
export async function attachRoutedHost(ep: Pick<EndpointPlan, 'hostVeth' | 'ip'>, node: Pick<NodeNetwork, 'primaryIp'>): Promise<void> {
  await netlink(routedHostOps(ep, node.primaryIp));
}

/** CHECK of the host side: the veth, its /32 route, proxy ARP. Returns the veth's link. */
export async function checkRoutedHost(ep: Pick<EndpointPlan, 'hostVeth' | 'ip'>): Promise<LinkInfo> {
  const host = await linkInfo(ep.hostVeth);
  if (!host) throw new DataplaneError(`host veth ${ep.hostVeth} not found`);
  if (host.master) throw new DataplaneError(`host veth ${ep.hostVeth} is a port of ${host.master}; a routed endpoint has no bridge`);
  // The node's own packets to the pod (kubelet probes, host-network pods, replies from the host stack) and,
  // in iptables mode, every packet to the pod follow the /32 route.
  const routes = (await ipv4Routes({ dev: ep.hostVeth })).filter((r) => r.dst === `${ep.ip}/32`);
  if (routes.length === 0) throw new DataplaneError(`no /32 route for ${ep.ip} via ${ep.hostVeth}`);
  const proxyArp = await readFile(`/proc/sys/net/ipv4/conf/${ep.hostVeth}/proxy_arp`, 'utf8').then((s) => s.trim(), () => undefined);
  if (proxyArp !== undefined && proxyArp !== '1') throw new DataplaneError(`proxy ARP is off on ${ep.hostVeth}`);
  return host;
}
