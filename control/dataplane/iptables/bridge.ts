// Bridge mode, as the original plugin does it: the NIC becomes a port of the
// bridge and its addresses and routes move to the bridge, so pods and the
// host share one L2 segment with the fabric. Everything moves in one
// `ip -batch` to keep the window without connectivity short.
import { ipBatch, linkInfo, ipv4Addrs, ipv4Routes, setSysctl, type AddrInfo, type RouteInfo } from '../../netlink/ip.js';
import { DataplaneError, DataplaneUnavailableError } from '../../errors.js';
import type { NodeNetwork } from '../types.js';

function routeLine(r: RouteInfo, dev: string): string | undefined {
  if (r.protocol === 'kernel') return undefined; // recreated by the address itself
  const parts = ['route', 'replace', r.dst];
  if (r.gateway) parts.push('via', r.gateway);
  parts.push('dev', dev);
  if (r.protocol && r.protocol !== 'boot') parts.push('proto', r.protocol);
  if (r.scope && r.scope !== 'global') parts.push('scope', r.scope);
  if (r.prefsrc) parts.push('src', r.prefsrc);
  if (r.metric !== undefined) parts.push('metric', String(r.metric));
  if (r.flags?.includes('onlink')) parts.push('onlink');
  return parts.join(' ');
}

/** ip -batch lines that put `addrs` and the non-kernel `routes` on `dev`. */
function addressAndRouteLines(dev: string, addrs: AddrInfo[], routes: RouteInfo[]): string[] {
  const lines = addrs.map((a) => `addr replace ${a.local}/${a.prefixlen}${a.broadcast ? ` broadcast ${a.broadcast}` : ''} dev ${dev}`);
  lines.push(`link set ${dev} up`);
  for (const r of routes) {
    const line = routeLine(r, dev);
    if (line) lines.push(line);
  }
  return lines;
}

/** Create the bridge and move the NIC under it. Idempotent. */
export async function ensureBridge(node: NodeNetwork): Promise<void> {
  const nic = await linkInfo(node.nic);
  if (!nic) throw new DataplaneUnavailableError(`host interface ${node.nic} not found; set "master" in the conflist to the VM's NIC`);
  const bridge = await linkInfo(node.bridge);
  if (bridge && nic.master === node.bridge) {
    if (!bridge.flags.includes('UP')) await ipBatch([`link set ${node.bridge} up`]);
    return;
  }
  if (nic.master && nic.master !== node.bridge) {
    throw new DataplaneUnavailableError(`${node.nic} is already a port of ${nic.master}; cannot enslave it to ${node.bridge}`);
  }
  const addrs = await ipv4Addrs(node.nic);
  const routes = await ipv4Routes(['dev', node.nic]);
  const lines: string[] = [];
  if (!bridge) lines.push(`link add ${node.bridge} type bridge forward_delay 0`);
  lines.push(`link set ${node.bridge} address ${nic.address} mtu ${nic.mtu}`);
  lines.push(`link set ${node.nic} master ${node.bridge}`);
  for (const a of addrs) lines.push(`addr del ${a.local}/${a.prefixlen} dev ${node.nic}`);
  lines.push(...addressAndRouteLines(node.bridge, addrs, routes));
  try {
    await ipBatch(lines);
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
  const routes = await ipv4Routes(['dev', node.bridge]);
  const lines = [`link set ${node.nic} nomaster`, `link del ${node.bridge}`, ...addressAndRouteLines(node.nic, addrs, routes)];
  try {
    await ipBatch(lines);
  } catch (err) {
    throw new DataplaneError(`restoring ${node.nic} from ${node.bridge} failed: ${(err as Error).message}`, { cause: err });
  }
}
