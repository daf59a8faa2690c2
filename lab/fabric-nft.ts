// The fabric's rules as nftables scripts (`nft -f -` in the fabric netns).
//
//   table netdev guard   anti-spoofing at the NIC links' ingress, before ARP and
//                        IP see the frame: source MAC and source IP (ARP sender
//                        included) must be the NIC's; sets keyed by ifname, so
//                        16,000 addresses cost one hash lookup.
//   table ip vnet        routing policy: which link may talk to which, NSGs,
//                        public IP 1:1 DNAT, internet SNAT of primary IPs, and
//                        the load balancers (chain `lb`, rewritten by the prober).
import { WIRESERVER_IP, type LoadBalancerSpec, type NsgRule, type ResolvedLabSpec, type ResolvedVm } from './spec.js';
import { isUsableHost } from './spec.js';
import { parseCidr, parseIpv4 } from './ipv4.js';
import { PEER_LINKS, SINK_IF } from './topology.js';
import type { LabNames } from './naming.js';

const INET = PEER_LINKS.inet.ifname;
const ONPREM = PEER_LINKS.onprem.ifname;
const WIRE = PEER_LINKS.wire.ifname;
const NICS = 'to-*';

export function fabricRuleset(spec: ResolvedLabSpec, names: LabNames): string {
  const nics = spec.vms.map((vm) => `"${names.nic(vm.name)}"`);
  const macs = spec.vms.map((vm) => `"${names.nic(vm.name)}" . ${vm.mac}`);
  const ips = spec.vms.flatMap((vm) => [vm.primaryIp, ...vm.secondaryIps].map((ip) => `"${names.nic(vm.name)}" . ${ip}`));
  const egress = spec.vms.filter((vm) => vm.publicIp !== undefined).map((vm) => vm.primaryIp);
  const snat = spec.vms.filter((vm) => vm.publicIp !== undefined).map((vm) => `${vm.primaryIp} : ${vm.publicIp}`);
  const dnat = publicMappings(spec).map(([pub, priv]) => `${pub} : ${priv}`);
  const perVmChains = spec.vms.flatMap((vm) => [`  chain ${nsgChain('out', vm.name)} {\n  }`, `  chain ${nsgChain('in', vm.name)} {\n  }`]);
  const vmap = (dir: 'in' | 'out'): string => spec.vms.map((vm) => `"${names.nic(vm.name)}" : jump ${nsgChain(dir, vm.name)}`).join(', ');

  return `
table netdev guard {
  set nic_mac { type ifname . ether_addr;${elements(macs)} }
  set nic_ip { type ifname . ipv4_addr;${elements(ips)} }
  chain guard {
    iifname . ether saddr != @nic_mac counter drop comment "source MAC is not the NIC's MAC"
    ether type arp iifname . arp saddr ether != @nic_mac counter drop comment "ARP sender MAC is not the NIC's MAC"
    ether type arp iifname . arp saddr ip != @nic_ip counter drop comment "ARP sender IP is not configured on the NIC"
    ether type ip iifname . ip saddr != @nic_ip counter drop comment "source IP is not configured on the NIC"
    ether type != { ip, arp } counter drop comment "IPv4 and ARP only"
  }
  chain ingress {
    type filter hook ingress devices = { ${nics.join(', ')} } priority -500; policy accept;
    jump guard
  }
}
table ip vnet {
  set egress { type ipv4_addr;${elements(egress)} }
  map snat_pub { type ipv4_addr : ipv4_addr;${elements(snat)} }
  map dnat_pub { type ipv4_addr : ipv4_addr;${elements(dnat)} }
  chain loadbal {
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    jump loadbal
    iifname "${INET}" dnat ip to ip daddr map @dnat_pub comment "public IP 1:1 to its ipconfig"
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "${INET}" snat ip to ip saddr map @snat_pub comment "primary IP to the VM's public IP"
  }
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
  }
  chain nsg_out_subnet {
  }
  chain nsg_in_subnet {
  }
${perVmChains.join('\n')}
  chain nsg_out {
    iifname vmap { ${vmap('out')} }
    jump nsg_out_subnet
  }
  chain nsg_in {
    jump nsg_in_subnet
    oifname vmap { ${vmap('in')} }
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    oifname "${SINK_IF}" counter drop comment "VNet address configured on no NIC"
    iifname "${WIRE}" oifname "${NICS}" accept comment "health probes from ${WIRESERVER_IP}"
    iifname "${NICS}" oifname "${WIRE}" accept comment "wireserver: VMs only"
    iifname "${NICS}" jump nsg_out
    oifname "${NICS}" jump nsg_in
    iifname "${NICS}" oifname "${NICS}" accept comment "inside the VNet"
    iifname "${NICS}" oifname "${ONPREM}" accept comment "peered on-prem, no NAT"
    iifname "${ONPREM}" oifname "${NICS}" accept comment "peered on-prem, no NAT"
    iifname "${NICS}" oifname "${INET}" ip saddr @egress accept comment "internet: primary IPs only"
    iifname "${INET}" oifname "${NICS}" ct status dnat accept comment "internet: public IPs and public LBs only"
    counter drop comment "no path"
  }
}
`;
}

/** public IP -> private IP, for every VM public IP and every ipconfig public IP. */
export function publicMappings(spec: ResolvedLabSpec): [string, string][] {
  return spec.vms.flatMap((vm) => [
    ...(vm.publicIp === undefined ? [] : [[vm.publicIp, vm.primaryIp] as [string, string]]),
    ...Object.entries(vm.publicIps).map(([priv, pub]) => [pub, priv] as [string, string]),
  ]);
}

function elements(items: string[]): string {
  return items.length === 0 ? '' : ` elements = { ${items.join(', ')} };`;
}

function nsgChain(direction: 'in' | 'out', vm: string): string {
  return `nsg_${direction}_vm_${vm}`;
}

export function nicIpElement(verb: 'add' | 'delete', names: LabNames, vm: string, ip: string): string {
  return `${verb} element netdev guard nic_ip { "${names.nic(vm)}" . ${ip} }`;
}

/** Commands that move one public mapping from `before` to `after` (either may be absent). */
export function publicIpCommands(
  vm: ResolvedVm,
  privateIp: string,
  before: string | undefined,
  after: string | undefined,
): string[] {
  const cmds: string[] = [];
  const primary = privateIp === vm.primaryIp;
  if (before !== undefined) {
    cmds.push(`delete element ip vnet dnat_pub { ${before} }`);
    if (primary) cmds.push(`delete element ip vnet snat_pub { ${privateIp} }`, `delete element ip vnet egress { ${privateIp} }`);
  }
  if (after !== undefined) {
    cmds.push(`add element ip vnet dnat_pub { ${after} : ${privateIp} }`);
    if (primary) cmds.push(`add element ip vnet snat_pub { ${privateIp} : ${after} }`, `add element ip vnet egress { ${privateIp} }`);
  }
  return cmds;
}

/**
 * All NSG chains, rebuilt in one transaction. Azure semantics per scope:
 * rules in priority order, first match decides; a scope without a matching
 * rule allows. Outbound: the NIC's rules, then the subnet's; inbound: subnet,
 * then NIC. Traffic to and from 168.63.129.16 is never filtered (as in Azure).
 */
export function nsgScript(spec: ResolvedLabSpec): string {
  const chains = new Map<string, NsgRule[]>([
    ['nsg_out_subnet', []],
    ['nsg_in_subnet', []],
  ]);
  for (const vm of spec.vms) {
    chains.set(nsgChain('out', vm.name), []);
    chains.set(nsgChain('in', vm.name), []);
  }
  for (const rule of spec.nsg) {
    const chain = rule.appliesTo === 'subnet' ? `nsg_${rule.direction}_subnet` : nsgChain(rule.direction, rule.appliesTo.vm);
    chains.get(chain)?.push(rule);
  }
  const lines: string[] = [];
  for (const [chain, rules] of chains) {
    lines.push(`flush chain ip vnet ${chain}`);
    for (const rule of [...rules].sort((a, b) => a.priority - b.priority)) lines.push(`add rule ip vnet ${chain} ${nsgRuleText(rule)}`);
  }
  return lines.join('\n') + '\n';
}

export function nsgRuleText(rule: NsgRule): string {
  const parts: string[] = [];
  if (rule.src !== '*') parts.push(`ip saddr ${rule.src}`);
  if (rule.dst !== '*') parts.push(`ip daddr ${rule.dst}`);
  const port = rule.dstPort === undefined ? undefined : Array.isArray(rule.dstPort) ? `${rule.dstPort[0]}-${rule.dstPort[1]}` : String(rule.dstPort);
  if (rule.protocol === '*') {
    if (port !== undefined) parts.push(`meta l4proto { tcp, udp } th dport ${port}`);
  } else {
    parts.push(`meta l4proto ${rule.protocol}`);
    if (port !== undefined) parts.push(`${rule.protocol} dport ${port}`);
  }
  const label = `p${rule.priority} ${rule.direction} ${rule.action}${rule.name ? ` ${rule.name}` : ''}`.replace(/[^A-Za-z0-9 _.:/-]/g, '_');
  parts.push('counter', rule.action === 'deny' ? 'drop' : 'return', `comment "${label}"`);
  return parts.join(' ');
}

/**
 * The `lb` chain for the backends currently healthy. A frontend with no
 * healthy backend drops new connections; an internal (VNet) frontend is not
 * reachable from the internet.
 */
export function lbScript(spec: ResolvedLabSpec, healthy: Map<string, string[]>): string {
  const subnet = parseCidr(spec.subnet);
  const lines = ['flush chain ip vnet loadbal'];
  for (const lb of spec.loadBalancers) {
    const match = lbMatch(lb, isUsableHost(subnet, parseIpv4(lb.frontend)));
    const up = healthy.get(lb.name) ?? [];
    if (up.length === 0) {
      lines.push(`add rule ip vnet loadbal ${match} counter drop comment "lb ${lb.name}: no healthy backend"`);
    } else {
      const map = up.map((ip, i) => `${i} : ${ip} . ${lb.backendPort}`).join(', ');
      lines.push(`add rule ip vnet loadbal ${match} counter dnat ip to numgen inc mod ${up.length} map { ${map} } comment "lb ${lb.name}"`);
    }
  }
  return lines.join('\n') + '\n';
}

function lbMatch(lb: LoadBalancerSpec, internal: boolean): string {
  return `${internal ? `iifname != "${INET}" ` : ''}ip daddr ${lb.frontend} tcp dport ${lb.port}`;
}
