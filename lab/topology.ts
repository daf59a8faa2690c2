// The lab's links and routes, as `ip -batch` scripts (one per namespace), so a
// 64-VM x 250-IP lab is a handful of processes, not thousands.
//
// The fabric is a router. It answers ARP by proxy_arp (every VNet address is
// routed somewhere other than the asker's own link: NIC addresses to their NIC,
// everything else to a sink link), and delivers by static routes through the
// NIC's primary IP, whose neighbour entry is permanent (the NIC's MAC).
import { FABRIC_MAC, WIRESERVER_IP, gatewayOf, type ResolvedLabSpec, type ResolvedVm } from './spec.js';
import { parseCidr } from './ipv4.js';
import type { LabNames } from './naming.js';

/** The fabric's links to the hosts behind it; point-to-point link-local addresses. */
export const PEER_LINKS = {
  inet: { ifname: 'inet0', fabricIp: '169.254.0.1' },
  onprem: { ifname: 'onprem0', fabricIp: '169.254.0.5' },
  wire: { ifname: 'wire0', fabricIp: '169.254.0.9' },
} as const;
/** Catch-all link for VNet addresses on no NIC: routable (so proxy_arp answers), never delivered. */
export const SINK_IF = 'sink0';

/** Sysctls of the fabric namespace. Applied before any link exists. */
export function fabricSysctls(): string[] {
  return [
    'net.ipv4.ip_forward=1',
    'net.ipv4.conf.all.proxy_arp=1',
    'net.ipv4.conf.all.rp_filter=0',
    'net.ipv4.conf.default.rp_filter=0',
    // A frame routed back out the link it came from must not teach the VM a shortcut.
    'net.ipv4.conf.all.send_redirects=0',
    'net.ipv4.conf.default.send_redirects=0',
    'net.ipv6.conf.all.disable_ipv6=1',
    'net.ipv6.conf.default.disable_ipv6=1',
  ];
}

export function fabricBatch(spec: ResolvedLabSpec, names: LabNames): string {
  const lines = ['link set lo up'];
  lines.push(`link add ${SINK_IF} type veth peer name sink1`, 'link set sink1 up', `link set ${SINK_IF} arp off up`, `route add ${spec.subnet} dev ${SINK_IF}`);
  const peer = (link: { ifname: string; fabricIp: string }, netns: string): void => {
    lines.push(`link add ${link.ifname} type veth peer name eth0 netns ${netns}`, `addr add ${link.fabricIp}/32 dev ${link.ifname}`, `link set ${link.ifname} up`);
  };
  peer(PEER_LINKS.inet, names.inet);
  lines.push(`route add ${spec.internet.ip}/32 dev ${PEER_LINKS.inet.ifname}`, `route add default via ${spec.internet.ip} dev ${PEER_LINKS.inet.ifname}`);
  peer(PEER_LINKS.onprem, names.onprem);
  lines.push(`route add ${spec.onprem.prefix} dev ${PEER_LINKS.onprem.ifname}`);
  peer(PEER_LINKS.wire, names.wire);
  lines.push(`route add ${WIRESERVER_IP}/32 dev ${PEER_LINKS.wire.ifname}`);
  for (const vm of spec.vms) lines.push(...fabricNicLines(vm, names));
  return lines.join('\n') + '\n';
}

function fabricNicLines(vm: ResolvedVm, names: LabNames): string[] {
  const nic = names.nic(vm.name);
  return [
    `link add ${nic} address ${FABRIC_MAC} type veth peer name eth0 address ${vm.mac} netns ${names.vm(vm.name)}`,
    `ntable change name arp_cache dev ${nic} proxy_delay 0`,
    `link set ${nic} up`,
    `route add ${vm.primaryIp}/32 dev ${nic}`,
    `neigh add ${vm.primaryIp} lladdr ${vm.mac} dev ${nic} nud permanent`,
    ...vm.secondaryIps.map((ip) => secondaryRoute('add', vm, ip, names)),
  ];
}

/** Delivery of a secondary IP: to the NIC's MAC, via the primary IP's permanent neighbour entry. */
export function secondaryRoute(verb: 'add' | 'del', vm: ResolvedVm, ip: string, names: LabNames): string {
  return verb === 'add' ? `route replace ${ip}/32 via ${vm.primaryIp} dev ${names.nic(vm.name)} onlink` : `route del ${ip}/32 dev ${names.nic(vm.name)}`;
}

export function vmBatch(spec: ResolvedLabSpec, vm: ResolvedVm): string {
  const { prefixLen } = parseCidr(spec.subnet);
  return ['link set lo up', `addr add ${vm.primaryIp}/${prefixLen} dev eth0`, 'link set eth0 up', `route add default via ${gatewayOf(spec.subnet)} dev eth0`].join('\n') + '\n';
}

/** A host behind the fabric (internet, on-prem, wireserver): one address, default route to the fabric. */
export function peerHostBatch(ip: string, link: { fabricIp: string }): string {
  return ['link set lo up', `addr add ${ip}/32 dev eth0`, 'link set eth0 up', `route add ${link.fabricIp}/32 dev eth0`, `route add default via ${link.fabricIp} dev eth0`].join('\n') + '\n';
}
