// Renders the plugin's own iptables and ebtables chains. The plugin only ever
// touches chains it owns (VNET-*) plus one jump rule per hook, so kube-proxy's
// rules and the host's are left alone.
import type { NodeNetwork, EndpointPlan } from '../types.js';

export const SNAT_CHAIN = 'VNET-SNAT';
export const FORWARD_CHAIN = 'VNET-FORWARD';
export const EB_PRE_CHAIN = 'VNET-PRE';
export const EB_POST_CHAIN = 'VNET-POST';
/** Frames the bridge must hand to the host stack instead of bridging them to the fabric (ipsToRouteViaHost). */
export const EB_VIAHOST_CHAIN = 'VNET-VIAHOST';
/** Host-side pod veths (control/netlink/veth.ts hostVethName): the FORWARD match of routed pods. */
const HOST_VETHS = 'azv+';
export const COMMENT = 'vnet-cni';
/** NetworkPolicy dispatch (policy-rules.ts fills it); VNET-FORWARD jumps here before accepting pod traffic. */
export const POLICY_FWD_CHAIN = 'VNET-POL-FWD';
/** VNET-FORWARD's first rule, as iptables-save prints it. */
export const POLICY_JUMP_SPEC = `-m comment --comment "${COMMENT}: policy" -j ${POLICY_FWD_CHAIN}`;

/**
 * iptables-restore --noflush input: declaring a chain flushes only that chain.
 * VNET-POL-FWD is referenced, never declared here (that would flush the
 * policies): ensureNode creates it first if it is missing.
 */
export function renderIptablesRestore(node: NodeNetwork): string {
  const lines = ['*nat', `:${SNAT_CHAIN} - [0:0]`];
  for (const cidr of node.noSnatCidrs) lines.push(`-A ${SNAT_CHAIN} -d ${cidr} -m comment --comment "${COMMENT}: no SNAT inside the VNet" -j RETURN`);
  lines.push(`-A ${SNAT_CHAIN} -s ${node.subnet} -m comment --comment "${COMMENT}: pods reach the internet as the primary IP" -j MASQUERADE`);
  lines.push('COMMIT', '*filter', `:${FORWARD_CHAIN} - [0:0]`);
  lines.push(`-A ${FORWARD_CHAIN} ${POLICY_JUMP_SPEC}`);
  // Bridge mode: pod traffic enters and leaves through the bridge; transparent: through each pod's own veth.
  const podSide = node.netMode === 'transparent' ? HOST_VETHS : node.bridge;
  lines.push(`-A ${FORWARD_CHAIN} -i ${podSide} -m comment --comment "${COMMENT}: pod traffic" -j ACCEPT`);
  lines.push(`-A ${FORWARD_CHAIN} -o ${podSide} -m comment --comment "${COMMENT}: pod traffic" -j ACCEPT`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** The jump rules, as [table, hook, ...match] argv tails for -C/-I/-D. */
export function jumpRules(): { table: string; chain: string; spec: string[] }[] {
  return [
    { table: 'nat', chain: 'POSTROUTING', spec: ['-m', 'comment', '--comment', `${COMMENT}: SNAT`, '-j', SNAT_CHAIN] },
    { table: 'filter', chain: 'FORWARD', spec: ['-m', 'comment', '--comment', `${COMMENT}: forward`, '-j', FORWARD_CHAIN] },
  ];
}

/** Node-wide ebtables rules: MAC rewriting the Azure fabric requires. */
export function ebtablesNodeRules(node: NodeNetwork): { chain: string; spec: string[] }[] {
  return [
    // Fabric ARP replies arrive addressed to the NIC's MAC (we rewrote the
    // request's sender); broadcast them so the pod that asked sees the answer.
    { chain: EB_PRE_CHAIN, spec: ['-p', 'ARP', '-i', node.nic, '--arp-op', 'Reply', '-j', 'dnat', '--to-dst', 'ff:ff:ff:ff:ff:ff', '--dnat-target', 'ACCEPT'] },
    // The fabric drops frames whose source MAC is not the NIC's.
    { chain: EB_POST_CHAIN, spec: ['-o', node.nic, '-j', 'snat', '--to-src', node.nicMac, '--snat-arp', '--snat-target', 'ACCEPT'] },
  ];
}

/**
 * Bridge mode, ipsToRouteViaHost: a pod frame to one of these IPs gets the bridge's own MAC as its
 * destination (nat redirect), so the bridge delivers it to the host stack instead of bridging it to the
 * fabric, which has no node-local DNS at 169.254.20.10. Upstream does this with a broute rule; the broute
 * table is missing from ebtables-nft on common kernels, the nat redirect works on both backends.
 */
export function ebtablesViaHostRules(node: NodeNetwork): { chain: string; spec: string[] }[] {
  if (node.netMode === 'transparent') return [];
  return (node.routeViaHost ?? []).map((ip) => ({
    chain: EB_VIAHOST_CHAIN,
    spec: ['-p', 'IPv4', '--ip-dst', ip, '-j', 'redirect', '--redirect-target', 'ACCEPT'],
  }));
}

/** Per-endpoint ebtables rule: the fabric delivers to the NIC's MAC; rewrite to the pod's. */
export function ebtablesEndpointRule(node: NodeNetwork, ep: Pick<EndpointPlan, 'ip' | 'podMac'>): { chain: string; spec: string[] } {
  return { chain: EB_PRE_CHAIN, spec: ['-p', 'IPv4', '-i', node.nic, '--ip-dst', ep.ip, '-j', 'dnat', '--to-dst', ep.podMac, '--dnat-target', 'ACCEPT'] };
}
