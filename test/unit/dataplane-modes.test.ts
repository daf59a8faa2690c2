// What each pod mode programs, as data: the routed endpoint's host ops (shared
// by ebpf and iptables transparent), the iptables chains per mode, and
// ipsToRouteViaHost in bridge mode. The lab suites check the packets.
import t from 'tap';
import { routedHostOps, ROUTED_GATEWAY } from '../../control/dataplane/routed.js';
import { renderIptablesRestore, ebtablesViaHostRules, EB_VIAHOST_CHAIN } from '../../control/dataplane/iptables/rules.js';
import type { NodeNetwork } from '../../control/dataplane/types.js';

const node: NodeNetwork = {
  nic: 'eth0', nicMac: '00:0d:3a:00:00:01', primaryIp: '10.240.0.4', prefixLength: 16, subnet: '10.240.0.0/16', gateway: '10.240.0.1',
  noSnatCidrs: ['10.240.0.0/16', '168.63.129.16/32'], mtu: 1500, bridge: 'azure0', bpfRoot: '/sys/fs/bpf/vnet-cni/n1',
  routeViaHost: ['169.254.20.10'],
};

t.test('the routed endpoint: proxy ARP without delay, link up, /32 route with the primary IP as source', async (t) => {
  t.same(routedHostOps({ hostVeth: 'azv0123456789ab', ip: '10.240.0.7' }, '10.240.0.4'), [
    { op: 'sysctl', key: 'net/ipv4/conf/azv0123456789ab/proxy_arp', value: '1' },
    { op: 'sysctl', key: 'net/ipv4/neigh/azv0123456789ab/proxy_delay', value: '0' },
    { op: 'linkSet', dev: 'azv0123456789ab', up: true },
    { op: 'routeAdd', address: '10.240.0.7', dstLen: 32, dev: 'azv0123456789ab', prefsrc: '10.240.0.4', replace: true },
  ]);
  t.equal(ROUTED_GATEWAY, '169.254.1.1', "upstream's virtual gateway");
});

t.test('iptables chains: bridge mode forwards through the bridge, transparent through the pod veths', async (t) => {
  const bridge = renderIptablesRestore({ ...node, netMode: 'bridge' });
  t.match(bridge, '-A VNET-FORWARD -i azure0 ');
  t.notMatch(bridge, 'azv+');
  const routed = renderIptablesRestore({ ...node, netMode: 'transparent' });
  t.match(routed, '-A VNET-FORWARD -i azv+ ');
  t.match(routed, '-A VNET-FORWARD -o azv+ ');
  t.notMatch(routed, 'azure0', 'no bridge named in transparent mode');
  for (const text of [bridge, routed]) {
    t.match(text, '-A VNET-SNAT -d 168.63.129.16/32 ', 'the wireserver is never SNATed');
    t.match(text, '-A VNET-SNAT -s 10.240.0.0/16 -m comment --comment "vnet-cni: pods reach the internet as the primary IP" -j MASQUERADE');
  }
  t.same(renderIptablesRestore({ ...node, netMode: undefined }), bridge, 'a record without netMode is bridge mode');
});

t.test('ipsToRouteViaHost: a redirect to the host per IP in bridge mode, nothing in transparent mode', async (t) => {
  t.same(ebtablesViaHostRules({ ...node, netMode: 'bridge' }), [
    { chain: EB_VIAHOST_CHAIN, spec: ['-p', 'IPv4', '--ip-dst', '169.254.20.10', '-j', 'redirect', '--redirect-target', 'ACCEPT'] },
  ]);
  t.same(ebtablesViaHostRules({ ...node, netMode: 'transparent' }), [], 'the host routes everything anyway');
  t.same(ebtablesViaHostRules({ ...node, routeViaHost: [] }), []);
});
