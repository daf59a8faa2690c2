// Bridge mode, as the original plugin does it: the NIC becomes a port of the
// bridge and its addresses and routes move to the bridge, so pods and the
// host share one L2 segment with the fabric. Everything moves in one
// netlink batch (one worker hop) to keep the window without connectivity short.
import { netlink, linkInfo, ipv4Addrs, ipv4Routes, routeTo, setSysctl, type AddrInfo, type NetlinkOp, type RouteInfo } from '../../netlink/ip.js';
import { DataplaneError, DataplaneUnavailableError } from '../../errors.js';
import type { NodeNetwork } from '../types.js';

const RT_SCOPES: Record<string, number> = { global: 0, site: 200, link: 253, host: 254 };
const RT_PROTOS: Record<string, number> = { boot: 3, static: 4, dhcp: 16 };

function routeOp(r: RouteInfo, dev: string): NetlinkOp | undefined {
  if (r.protocol === 'kernel') return undefined; // recreated by the address itself
  const proto = r.protocol === undefined ? undefined : (RT_PROTOS[r.protocol] ?? (/^\d+$/.test(r.protocol) ? Number(r.protocol) : undefined));
  return {
    op: 'routeAdd',
    ...routeTo(r.dst),
    ...(r.gateway ? { gateway: r.gateway } : {}),
    dev,
    ...(proto !== undefined ? { protocol: proto } : {}),
    ...(r.scope && RT_SCOPES[r.scope] !== undefined ? { scope: RT_SCOPES[r.scope] } : {}),
    ...(r.prefsrc ? { prefsrc: r.prefsrc } : {}),
    ...(r.metric !== undefined ? { metric: r.metric } : {}),
    onlink: r.flags?.includes('onlink') ?? false,
    replace: true,
  };
}

/** Netlink ops that put `addrs` and the non-kernel `routes` on `dev`. */
function addressAndRouteOps(dev: string, addrs: AddrInfo[], routes: RouteInfo[]): NetlinkOp[] {
  const ops: NetlinkOp[] = addrs.map((a) => ({ op: 'addrAdd', dev, address: a.local, prefixLength: a.prefixlen, ...(a.broadcast ? { broadcast: a.broadcast } : {}), replace: true }));
  ops.push({ op: 'linkSet', dev, up: true });
  for (const r of routes) {
    const op = routeOp(r, dev);
    if (op) ops.push(op);
  }
  return ops;
}

/** Create the bridge and move the NIC under it. Idempotent. */
export async function ensureBridge(node: NodeNetwork): Promise<void> {
  const nic = await linkInfo(node.nic);
  if (!nic) throw new DataplaneUnavailableError(`host interface ${node.nic} not found; set "master" in the conflist to the VM's NIC`);
  const bridge = await linkInfo(node.bridge);
  if (bridge && nic.master === node.bridge) {
    if (!bridge.flags.includes('UP')) await netlink([{ op: 'linkSet', dev: node.bridge, up: true }]);
    return;
  }
  if (nic.master && nic.master !== node.bridge) {
    throw new DataplaneUnavailableError(`${node.nic} is already a port of ${nic.master}; cannot enslave it to ${node.bridge}`);
  }
  const addrs = await ipv4Addrs(node.nic);
  const routes = await ipv4Routes({ dev: node.nic });
  const ops: NetlinkOp[] = [];
  if (!bridge) ops.push({ op: 'linkAdd', kind: 'bridge', name: node.bridge });
  ops.push({ op: 'linkSet', dev: node.bridge, mac: nic.address, mtu: nic.mtu });
  ops.push({ op: 'linkSet', dev: node.nic, master: node.bridge });
  for (const a of addrs) ops.push({ op: 'addrDel', dev: node.nic, address: a.local, prefixLength: a.prefixlen });
  ops.push(...addressAndRouteOps(node.bridge, addrs, routes));
  try {
    await netlink(ops);
  } catch (err) {
    await restoreNic(node).catch(() => {});
    throw err;
  }
  // Bridged pod traffic must traverse iptables: SNAT, and kube-proxy's
  // ClusterIP DNAT whose replies are bridged between pods (kubeadm requires it).
  await setSysctl('net.bridge.bridge-nf-call-iptables', '1');
  await setSysctl('net.ipv4.ip_forward', '1');
}

/** Move addresses and routes back to the NIC and delete the bridge. Idempotent. */
export async function restoreNic(node: NodeNetwork): Promise<void> {
  const bridge = await linkInfo(node.bridge);
  if (!bridge) return;
  const addrs = await ipv4Addrs(node.bridge);
  const routes = await ipv4Routes({ dev: node.bridge });
  const ops: NetlinkOp[] = [{ op: 'linkSet', dev: node.nic, master: '' }, { op: 'linkDel', dev: node.bridge }, ...addressAndRouteOps(node.nic, addrs, routes)];
  try {
    await netlink(ops);
  } catch (err) {
    throw new DataplaneError(`restoring ${node.nic} from ${node.bridge} failed: ${(err as Error).message}`, { cause: err });
  }
}
