// The endpoint diff of `vnetctl debug endpoints`: every kind of disagreement
// between the kernel and the store is flagged, and agreement is not.
import t from 'tap';
import { diffEndpoints, type EndpointFacts, type MapEndpoint } from '../../control/debug/views/endpoints.js';
import type { EndpointRecord } from '../../control/store/node-store.js';
import type { LinkInfo } from '../../control/netlink/ip.js';

function rec(ip: string, veth: string, extra: Partial<EndpointRecord> = {}): EndpointRecord {
  return {
    containerId: `c-${veth}`, ifName: 'eth0', netns: `/run/netns/p-${veth}`, ip, prefixLength: 16, gateway: '10.240.0.1',
    hostVeth: veth, hostMac: '02:00:00:00:00:01', podMac: '02:00:00:00:00:02', mtu: 1500, mode: 'ebpf', phase: 'ready',
    network: 'azure', podName: veth, podNamespace: 'default', createdAt: '2026-01-01T00:00:00Z', ...extra,
  };
}
const link = (ifindex: number, ifname: string, master?: string): LinkInfo => ({ ifindex, ifname, address: '02:00:00:00:00:01', mtu: 1500, operstate: 'UP', flags: [], ...(master ? { master } : {}) });
const entry = (ip: string, ifindex: number, extra: Partial<MapEndpoint> = {}): MapEndpoint => ({ ip, ifindex, podMac: '02:00:00:00:00:02', hostMac: '02:00:00:00:00:01', ...extra });

const kinds = (f: EndpointFacts): Record<string, string[]> => Object.fromEntries(diffEndpoints(f).map((r) => [r.ip, r.issues.map((i) => i.kind)]));

t.test('ebpf: agreement is ok; each difference is flagged once', async (t) => {
  const links = [link(1, 'lo'), link(2, 'eth0'), link(3, 'azva'), link(4, 'azvb'), link(5, 'azvc'), link(6, 'azvd'), link(9, 'azvx')];
  const facts: EndpointFacts = {
    mode: 'ebpf',
    links,
    records: [
      rec('10.240.1.4', 'azva'),
      rec('10.240.1.5', 'azvb'), // not in the map
      rec('10.240.1.6', 'azvc'), // map points at another ifindex
      rec('10.240.1.7', 'azvd'), // MACs differ
      rec('10.240.1.8', 'azvgone'), // veth deleted
      rec('10.240.1.9', 'azvnew', { phase: 'creating' }), // ADD in flight: no map entry yet, no complaint
    ],
    map: [
      entry('10.240.1.4', 3),
      entry('10.240.1.6', 9),
      entry('10.240.1.7', 6, { podMac: '02:00:00:00:00:aa', hostMac: '02:00:00:00:00:bb' }),
      entry('10.240.1.8', 42),
      entry('10.240.1.20', 5), // nobody owns it
    ],
  };
  t.same(kinds(facts), {
    '10.240.1.4': [],
    '10.240.1.5': ['in-store-not-in-map'],
    '10.240.1.6': ['ifindex-mismatch'],
    '10.240.1.7': ['pod-mac-mismatch', 'host-mac-mismatch'],
    '10.240.1.8': ['veth-missing'],
    '10.240.1.9': ['veth-missing'],
    '10.240.1.20': ['in-map-not-in-store'],
  });
  const rows = diffEndpoints(facts);
  t.same(rows.map((r) => r.ip), ['10.240.1.4', '10.240.1.5', '10.240.1.6', '10.240.1.7', '10.240.1.8', '10.240.1.9', '10.240.1.20'], 'sorted numerically');
  t.equal(rows[0]!.map!.ifname, 'azva', 'the map ifindex is named from the links');
  t.match(rows[2]!.issues[0]!.detail, /ifindex 9 \(azvx\), azvc is ifindex 5/);
  t.equal(rows[4]!.map!.ifname, undefined, 'an ifindex no link has stays unnamed');
});

t.test('iptables: bridge port and the ebtables DNAT rule per pod', async (t) => {
  const records = [rec('10.240.1.4', 'azva', { mode: 'iptables' }), rec('10.240.1.5', 'azvb', { mode: 'iptables' }), rec('10.240.1.6', 'azvc', { mode: 'iptables' })];
  const facts: EndpointFacts = {
    mode: 'iptables',
    links: [link(3, 'azva', 'azure0'), link(4, 'azvb'), link(5, 'azvc', 'azure0')],
    records,
    bridge: 'azure0',
    ebtables: new Map([['10.240.1.4', '02:00:00:00:00:02'], ['10.240.1.5', '02:00:00:00:00:02'], ['10.240.1.7', '02:00:00:00:00:09']]),
  };
  t.same(kinds(facts), { '10.240.1.4': [], '10.240.1.5': ['veth-not-on-bridge'], '10.240.1.6': ['ebtables-rule-missing'] });
  facts.ebtables!.set('10.240.1.6', '02:00:00:00:00:99');
  t.same(kinds(facts)['10.240.1.6'], ['ebtables-mac-mismatch']);
});
