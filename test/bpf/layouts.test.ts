// The TS encoders must agree with bpf/include/vnet_maps.h three ways: the
// addon's compiler (same header), the kernel's map key/value sizes, and the
// BPF object's BTF (what clang laid out for the programs).
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { native } from '../../native/index.js';
import * as L from '../../control/dataplane/ebpf/layouts.js';
import { cleanupStale, ensureBpffs, pinRootFor, removePinRoot, repoDir, unavailableReason } from './helpers/env.js';

const skip = unavailableReason() ?? false;

t.test('addon layouts match the TS sizes', { skip }, async (t) => {
  const l = native().layouts();
  t.equal(l.vnet_endpoint!.size, L.SIZES.endpoint);
  t.equal(l.vnet_lpm_key!.size, L.SIZES.lpmKey);
  t.equal(l.vnet_cidr_info!.size, L.SIZES.cidrInfo);
  t.equal(l.vnet_config!.size, L.SIZES.config);
  t.equal(l.vnet_nat_tuple!.size, L.SIZES.natTuple);
  t.equal(l.vnet_nat_entry!.size, L.SIZES.natEntry);
  t.equal(l.vnet_flow_entry!.size, L.SIZES.flowEntry);
  t.equal(l.vnet_pol_ep_key!.size, L.SIZES.polEpKey);
  t.equal(l.vnet_pol_ep!.size, L.SIZES.polEp);
  t.equal(l.vnet_pol_id_val!.size, L.SIZES.polIdVal);
  t.equal(l.vnet_pol_cidr_key!.size, L.SIZES.polCidrKey);
  t.equal(l.vnet_pol_match!.size, L.SIZES.polMatch);
  t.equal(l.vnet_pol_port_key!.size, L.SIZES.polPortKey);
  t.equal(l.vnet_pol_port_val!.size, L.SIZES.polPortVal);
  t.equal(l.vnet_pol_flow_key!.size, L.SIZES.polFlowKey);
  // Offsets the encoders write at.
  t.same(l.vnet_endpoint!.offsets, { ifindex: 0, flags: 4, pod_mac: 8, host_mac: 14 });
  t.same(l.vnet_config!.offsets, {
    primary_ip: 0, nic_ifindex: 4, nic_mac: 8, flags: 14, nat_port_min: 16, nat_port_max: 18, ctl_flags: 20,
    tcp_timeout_ns: 24, udp_timeout_ns: 32, icmp_timeout_ns: 40, tcp_fin_timeout_ns: 48, tcp_rst_timeout_ns: 56,
  });
  t.same(l.vnet_nat_tuple!.offsets, { saddr: 0, daddr: 4, sport: 8, dport: 10, proto: 12 });
  t.same(l.vnet_nat_entry!.offsets, { addr: 0, port: 4, flags: 6, last_seen_ns: 8 });
  t.same(l.vnet_pol_ep_key!.offsets, { family: 0, dir: 1, addr: 4 });
  t.same(l.vnet_pol_ep!.offsets, { ingress_id: 0, egress_id: 4, flags: 8 });
  t.same(l.vnet_pol_cidr_key!.offsets, { prefixlen: 0, id: 4, family: 8, addr: 12 });
  t.same(l.vnet_pol_match!.offsets, { set: 0, flags: 2 });
  t.same(l.vnet_pol_port_key!.offsets, { prefixlen: 0, id: 4, set: 8, proto: 10, port: 12 });
  t.same(l.vnet_pol_flow_key!.offsets, { local: 0, remote: 16, lport: 32, rport: 34, proto: 36, family: 37, kind: 38 });
});

t.test('policy flags in TS equal the header', async (t) => {
  const header = fs.readFileSync(path.join(repoDir(), 'bpf', 'include', 'vnet_maps.h'), 'utf8');
  const def = (name: string): number => {
    const m = new RegExp(`#define ${name} \\(?(?:1u << )?(\\d+)\\)?`).exec(header);
    if (!m) throw new Error(`${name} not in the header`);
    return name.endsWith('_MAX') || !/\(1u <</.test(m[0]) ? Number(m[1]) : 1 << Number(m[1]);
  };
  t.same(L.POL_F, { INGRESS_ISOLATED: def('VNET_POL_F_INGRESS_ISOLATED'), EGRESS_ISOLATED: def('VNET_POL_F_EGRESS_ISOLATED') });
  t.same(L.POL_M, { ANY_PORT: def('VNET_POL_M_ANY_PORT') });
  t.same(L.POL_DIR, { ingress: def('VNET_POL_DIR_INGRESS'), egress: def('VNET_POL_DIR_EGRESS') });
  t.equal(L.AF.ipv4, def('VNET_AF_INET'));
  t.equal(L.COUNTERS_MAX, def('VNET_COUNTERS_MAX'));
});

t.test('counter labels come from the header, in enum order', { skip }, async (t) => {
  const header = fs.readFileSync(path.join(repoDir(), 'bpf', 'include', 'vnet_maps.h'), 'utf8');
  const fromHeader = [...header.matchAll(/X\(([A-Z][A-Z0-9_]*), "([^"]+)"\)/g)].map((m) => m[2]);
  t.same(native().reasons(), fromHeader);
  t.ok(fromHeader.length >= 10);
  t.equal(new Set(fromHeader).size, fromHeader.length, 'labels are unique');
});

t.test('NAT close flags in TS equal the header', async (t) => {
  const header = fs.readFileSync(path.join(repoDir(), 'bpf', 'include', 'vnet_maps.h'), 'utf8');
  const fromHeader = Object.fromEntries([...header.matchAll(/#define VNET_NAT_F_([A-Z_]+) \(1u << (\d+)\)/g)].map((m): [string, number] => [m[1] ?? '', 1 << Number(m[2])]));
  t.same(fromHeader, L.NAT_F);
});

t.test('kernel map sizes and BTF layouts match the TS layouts', { skip }, async (t) => {
  await cleanupStale();
  await ensureBpffs();
  const root = pinRootFor('layouts');
  fs.mkdirSync(root);
  t.teardown(() => removePinRoot(root));
  const obj = await native().loadObject(path.join(repoDir(), 'bpf', 'vnet.bpf.o'), { pinMapsDir: root });
  t.teardown(() => obj.close());
  const expect: Record<string, [number, number]> = {
    [L.MAPS.endpoints]: [L.SIZES.endpointKey, L.SIZES.endpoint],
    [L.MAPS.cidrs]: [L.SIZES.lpmKey, L.SIZES.cidrInfo],
    [L.MAPS.config]: [L.SIZES.configKey, L.SIZES.config],
    [L.MAPS.snatFwd]: [L.SIZES.natTuple, L.SIZES.natEntry],
    [L.MAPS.snatRev]: [L.SIZES.natTuple, L.SIZES.natEntry],
    [L.MAPS.inbound]: [L.SIZES.natTuple, L.SIZES.flowEntry],
    [L.MAPS.counters]: [L.SIZES.counterKey, L.SIZES.counter],
    [L.MAPS.polEps]: [L.SIZES.polEpKey, L.SIZES.polEp],
    [L.MAPS.polIds]: [L.SIZES.polIdKey, L.SIZES.polIdVal],
    [L.MAPS.polCidrs]: [L.SIZES.polCidrKey, L.SIZES.polMatch],
    [L.MAPS.polPorts]: [L.SIZES.polPortKey, L.SIZES.polPortVal],
    [L.MAPS.polFlows]: [L.SIZES.polFlowKey, L.SIZES.flowEntry],
    [L.MAPS.polDrops]: [L.SIZES.polEpKey, L.SIZES.counter],
  };
  t.same(obj.maps().sort(), Object.keys(expect).sort(), 'the object defines exactly the maps TS knows');
  for (const [name, [k, v]] of Object.entries(expect)) {
    const m = obj.map(name);
    const info = m.info();
    t.equal(info.keySize, k, `${name} key size`);
    t.equal(info.valueSize, v, `${name} value size`);
    m.close();
  }
  t.equal(obj.map(L.MAPS.counters).info().maxEntries, L.COUNTERS_MAX, 'fixed counter capacity');
  t.ok(native().reasons().length <= L.COUNTERS_MAX, 'room for every reason');
  const addon = native().layouts();
  for (const struct of ['vnet_endpoint', 'vnet_config', 'vnet_nat_tuple', 'vnet_nat_entry', 'vnet_lpm_key', 'vnet_pol_ep_key', 'vnet_pol_ep', 'vnet_pol_cidr_key', 'vnet_pol_match', 'vnet_pol_port_key', 'vnet_pol_flow_key']) {
    const btf = obj.btfStruct(struct);
    t.ok(btf, `${struct} is in the object's BTF`);
    t.equal(btf!.size, addon[struct]!.size, `${struct} size (BTF vs addon)`);
    for (const [member, offset] of Object.entries(addon[struct]!.offsets)) {
      t.equal(btf!.members.find((m) => m.name === member)?.offset, offset, `${struct}.${member} offset`);
    }
  }
  t.same(obj.programs().sort(), Object.values(L.PROGRAMS).sort());
});

t.test('encoders round-trip and reject garbage', async (t) => {
  const ep = { ifindex: 7, flags: 0, podMac: '02:aa:bb:cc:dd:ee', hostMac: 'ee:dd:cc:bb:aa:02' };
  t.same(L.decodeEndpoint(L.encodeEndpoint(ep)), ep);
  const tuple = { saddr: '10.240.0.5', daddr: '203.0.113.10', sport: 40000, dport: 443, proto: 6 };
  t.same(L.decodeNatTuple(L.encodeNatTuple(tuple)), tuple);
  t.equal(L.encodeNatTuple(tuple).readUInt16BE(8), 40000, 'ports are stored in network order');
  t.same(L.encodeNatTuple(tuple).subarray(0, 4), Buffer.from([10, 240, 0, 5]), 'addresses in wire order');
  t.equal(L.decodeLpmKey(L.encodeLpmKey('10.240.7.9/16')), '10.240.0.0/16', 'host bits cleared');
  t.equal(L.decodeLpmKey(L.encodeLpmKey('168.63.129.16')), '168.63.129.16/32');
  const cfg = {
    primaryIp: '10.240.0.4', nicIfindex: 2, nicMac: '00:0d:3a:f9:dc:a6', flags: 5, natPortMin: 61000, natPortMax: 65535,
    ctlFlags: 1, tcpTimeoutNs: 1n, udpTimeoutNs: 2n, icmpTimeoutNs: 3n, tcpFinTimeoutNs: 4n, tcpRstTimeoutNs: 5n,
  };
  t.same(L.decodeConfig(L.encodeConfig(cfg)), cfg);
  const entry = { addr: '10.240.0.4', port: 61234, lastSeenNs: 77n, flags: L.NAT_F.FIN_OUT | L.NAT_F.RST };
  t.same(L.decodeNatEntry(L.encodeNatEntry(entry)), entry);
  t.equal(L.natClosed(L.NAT_F.FIN_OUT), false, 'FIN one way: still open');
  t.equal(L.natClosed(L.NAT_F.FIN_OUT | L.NAT_F.FIN_IN), true, 'FIN both ways: closed');
  t.equal(L.natClosed(L.NAT_F.RST), true, 'RST: closed');
  for (const bad of ['10.0.0.256', '10.0.0', 'a.b.c.d', '']) t.throws(() => L.ipToBytes(bad), { code: 'EINVALIDCONFIG' }, bad);
  for (const bad of ['10.0.0.0/33', '10.0.0.0/x', '10.0.0.0/8/1', '10.0.0.0/']) t.throws(() => L.parseCidr(bad), { code: 'EINVALIDCONFIG' }, bad);
  t.throws(() => L.macToBytes('00:11:22:33:44'), { code: 'EINVALIDCONFIG' });
});
