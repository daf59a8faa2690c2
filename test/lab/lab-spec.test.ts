// The lab spec, its validation and the pure renderers (XML, nft rule text).
// No namespaces here.
import t from 'tap';
import { defaultSpec, validateSpec, macForIp, type LabSpec } from '../../lab/spec.js';
import { LabSpecError } from '../../lab/errors.js';
import { interfacesXml } from '../../lab/wire-xml.js';
import { nsgRuleText, lbScript } from '../../lab/fabric-nft.js';
import { compressIps } from '../../lab/table.js';
import { pidOfPrefix, prefixOfName, LabNames } from '../../lab/naming.js';

const base = (): LabSpec => ({ subnet: '10.240.0.0/16', vms: [{ name: 'vm1', primaryIp: '10.240.0.4', secondaryIps: ['10.240.1.4'] }] });

t.test('defaultSpec scales to 64 VMs x 250 secondary IPs, all distinct', async (t) => {
  const spec = defaultSpec(64, 250);
  const ips = spec.vms.flatMap((vm) => [vm.primaryIp, ...vm.secondaryIps]);
  t.equal(ips.length, 64 * 251);
  t.equal(new Set(ips).size, ips.length, 'no address twice');
  t.equal(new Set(spec.vms.map((vm) => vm.mac)).size, 64, 'MACs distinct');
  t.equal(new Set(spec.vms.map((vm) => vm.publicIp)).size, 64, 'public IPs distinct');
  t.match(spec.vms[0], { name: 'vm1', primaryIp: '10.240.0.4', publicIp: '198.51.100.11', mac: '00:0d:3a:f0:00:04' });
  t.equal(spec.vms[63]!.secondaryIps.at(-1), '10.240.64.253');
  t.same(spec.internet, { ip: '203.0.113.10' });
  t.same(spec.onprem, { prefix: '172.16.1.0/24', ip: '172.16.1.10' });
});

t.test('validateSpec fills defaults and keeps given values', async (t) => {
  const spec = validateSpec({ ...base(), vms: [{ ...base().vms[0]!, mac: '00:0D:3A:AA:BB:CC' }] });
  t.equal(spec.vms[0]!.mac, '00:0d:3a:aa:bb:cc');
  t.same(spec.vms[0]!.publicIps, {});
  t.same(spec.nsg, []);
  t.same(spec.loadBalancers, []);
  t.equal(macForIp('10.240.1.2'), '00:0d:3a:f0:01:02');
});

const bad: [string, (s: LabSpec) => void, RegExp][] = [
  ['subnet not a prefix', (s) => (s.subnet = '10.240.0.0'), /subnet/],
  ['subnet host bits', (s) => (s.subnet = '10.240.0.1/16'), /host bits/],
  ['primary outside subnet', (s) => (s.vms[0]!.primaryIp = '10.241.0.4'), /usable host/],
  ['primary is the gateway', (s) => (s.vms[0]!.primaryIp = '10.240.0.1'), /usable host/],
  ['broadcast secondary', (s) => (s.vms[0]!.secondaryIps = ['10.240.255.255']), /usable host/],
  ['duplicate IP', (s) => (s.vms[0]!.secondaryIps = ['10.240.0.4']), /already configured/],
  ['too many secondaries', (s) => (s.vms[0]!.secondaryIps = Array.from({ length: 251 }, (_, i) => `10.240.2.${i + 4}`)), /at most 250/],
  ['bad VM name', (s) => (s.vms[0]!.name = 'VM-1'), /name/],
  ['reserved VM name', (s) => (s.vms[0]!.name = 'fabric'), /name/],
  ['duplicate VM', (s) => s.vms.push({ name: 'vm1', primaryIp: '10.240.0.5', secondaryIps: [] }), /duplicate VM/],
  ['multicast MAC', (s) => (s.vms[0]!.mac = '01:00:5e:00:00:01'), /multicast/],
  ['fabric MAC', (s) => (s.vms[0]!.mac = '12:34:56:78:9a:bc'), /reserved/],
  ['public IP inside the VNet', (s) => (s.vms[0]!.publicIp = '10.240.9.9'), /inside the VNet/],
  ['public IP is the wireserver', (s) => (s.vms[0]!.publicIp = '168.63.129.16'), /wireserver/],
  ['public IP of a non-NIC address', (s) => (s.vms[0]!.publicIps = { '10.240.1.5': '198.51.100.5' }), /not a secondary/],
  ['public IP reused', (s) => ((s.vms[0]!.publicIp = '198.51.100.5'), (s.vms[0]!.publicIps = { '10.240.1.4': '198.51.100.5' })), /already used/],
  ['on-prem overlaps VNet', (s) => (s.onprem = { prefix: '10.240.128.0/17', ip: '10.240.128.10' }), /overlaps/],
  ['NSG priority out of range', (s) => (s.nsg = [{ priority: 5, direction: 'in', action: 'deny', protocol: '*', src: '*', dst: '*', appliesTo: 'subnet' }]), /priority/],
  ['NSG same priority twice', (s) => (s.nsg = [1, 2].map(() => ({ priority: 100, direction: 'in' as const, action: 'deny' as const, protocol: '*' as const, src: '*', dst: '*', appliesTo: 'subnet' as const }))), /share priority/],
  ['NSG port on icmp', (s) => (s.nsg = [{ priority: 100, direction: 'in', action: 'deny', protocol: 'icmp', src: '*', dst: '*', dstPort: 80, appliesTo: 'subnet' }]), /no ports/],
  ['NSG unknown VM', (s) => (s.nsg = [{ priority: 100, direction: 'in', action: 'deny', protocol: 'tcp', src: '*', dst: '*', appliesTo: { vm: 'vm9' } }]), /no VM/],
  ['LB frontend on a NIC', (s) => (s.loadBalancers = [{ name: 'web', frontend: '10.240.1.4', port: 80, backends: ['10.240.0.4'], backendPort: 80 }]), /configured on a NIC/],
  ['LB backend outside VNet', (s) => (s.loadBalancers = [{ name: 'web', frontend: '10.240.9.9', port: 80, backends: ['172.16.1.10'], backendPort: 80 }]), /not a VNet address/],
];
for (const [name, mutate, message] of bad) {
  t.test(`validateSpec rejects: ${name}`, async (t) => {
    const spec = base();
    mutate(spec);
    t.throws(() => validateSpec(spec), { name: 'LabSpecError', code: 'ELABSPEC', message });
  });
}

t.test('LabSpecError is part of the project hierarchy', async (t) => {
  const err = new LabSpecError('x');
  t.equal(err.cniCode, 7);
  t.equal(err.code, 'ELABSPEC');
});

t.test('interfacesXml is the VNET-FABRIC.md document', async (t) => {
  const spec = validateSpec({ subnet: '10.240.0.0/16', vms: [{ name: 'vm1', mac: '00:0d:3a:f9:dc:a6', primaryIp: '10.240.0.4', secondaryIps: ['10.240.0.5'] }] });
  t.equal(
    interfacesXml(spec.subnet, spec.vms[0]!),
    [
      '<Interfaces>',
      '  <Interface MacAddress="000D3AF9DCA6" IsPrimary="true">',
      '    <IPSubnet Prefix="10.240.0.0/16">',
      '      <IPAddress Address="10.240.0.4" IsPrimary="true"/>',
      '      <IPAddress Address="10.240.0.5" IsPrimary="false"/>',
      '    </IPSubnet>',
      '  </Interface>',
      '</Interfaces>',
      '',
    ].join('\n'),
  );
});

t.test('NSG rules render to nft', async (t) => {
  t.equal(
    nsgRuleText({ priority: 100, direction: 'in', action: 'deny', protocol: 'tcp', src: '*', dst: '10.240.0.5/32', dstPort: 8080, appliesTo: 'subnet', name: 'no "web"' }),
    'ip daddr 10.240.0.5/32 meta l4proto tcp tcp dport 8080 counter drop comment "p100 in deny no _web_"',
  );
  t.equal(
    nsgRuleText({ priority: 200, direction: 'out', action: 'allow', protocol: '*', src: '10.240.1.0/24', dst: '*', dstPort: [1000, 2000], appliesTo: { vm: 'vm1' } }),
    'ip saddr 10.240.1.0/24 meta l4proto { tcp, udp } th dport 1000-2000 counter return comment "p200 out allow"',
  );
});

t.test('LB chain: spread over healthy backends, drop when none', async (t) => {
  const spec = validateSpec({ ...base(), loadBalancers: [{ name: 'web', frontend: '10.240.9.9', port: 80, backends: ['10.240.0.4', '10.240.1.4'], backendPort: 8080 }] });
  t.match(lbScript(spec, new Map([['web', ['10.240.0.4', '10.240.1.4']]])), /iifname != "inet0" ip daddr 10\.240\.9\.9 tcp dport 80 counter dnat ip to numgen inc mod 2 map \{ 0 : 10\.240\.0\.4 \. 8080, 1 : 10\.240\.1\.4 \. 8080 \}/);
  t.match(lbScript(spec, new Map()), /ip daddr 10\.240\.9\.9 tcp dport 80 counter drop/);
});

t.test('names: prefixes encode the owner pid', async (t) => {
  t.equal(pidOfPrefix('vl1234'), 1234);
  t.equal(pidOfPrefix('vl1234x2'), 1234);
  t.equal(pidOfPrefix('mylab'), undefined);
  t.equal(prefixOfName('vl1234-vm1-pod'), 'vl1234');
  t.equal(prefixOfName('nodash'), undefined);
  const names = new LabNames('vl77');
  t.equal(names.vm('vm1'), 'vl77-vm1');
  t.equal(names.pod('vm1', 'p1'), 'vl77-vm1-p1');
  t.equal(names.bpfDir('vm1'), '/sys/fs/bpf/vl77-vm1');
  t.throws(() => new LabNames('bad-prefix'), { code: 'ELABSPEC' });
  t.throws(() => names.pod('vm1', '../x'), { code: 'ELABSPEC' });
});

t.test('compressIps', async (t) => {
  t.equal(compressIps(['10.240.1.4', '10.240.1.5', '10.240.1.6', '10.240.2.9']), '10.240.1.4-6, 10.240.2.9');
  t.equal(compressIps([]), '');
});
