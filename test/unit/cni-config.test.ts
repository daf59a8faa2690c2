// parseNetConf: the original azure-vnet conflist entries are accepted
// unchanged, our keys get their documented defaults, and every invalid value
// fails with code 7 and a message naming the field.
import os from 'node:os';
import t from 'tap';
import { CniCode, DecodeError, InvalidConfigError } from '../../control/errors.js';
import { decodeStdin, MAX_JSON_DEPTH, MAX_STDIN_BYTES, nestingDepth, parseAttachments, parseNetConf } from '../../cni/config.js';

/** Plugin entries of the original's shipped conflists, as libcni hands them over (name/cniVersion injected). */
const ORIGINAL_BRIDGE = {
  cniVersion: '0.3.0',
  name: 'azure',
  type: 'azure-vnet',
  mode: 'bridge',
  bridge: 'azure0',
  adapterName: '',
  capabilities: { portMappings: true, dns: true },
  ipam: { type: 'azure-vnet-ipam' },
  dns: { nameservers: ['10.0.0.10', '168.63.129.16'], search: ['svc.cluster.local'] },
  runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }], dns: { servers: ['10.0.0.10'] } },
};
const ORIGINAL_TRANSPARENT = {
  cniVersion: '0.3.0',
  name: 'azure',
  type: 'azure-vnet',
  mode: 'transparent',
  ipsToRouteViaHost: ['169.254.20.10'],
  logLevel: 'debug',
  vnetCidrs: '10.0.0.0/8,172.16.1.0/24',
  ipam: { type: 'azure-vnet-ipam', environment: 'azure' },
};

t.test('the original bridge entry: accepted, defaults filled, unknown keys kept in raw', async (t) => {
  const c = parseNetConf(ORIGINAL_BRIDGE, 'azure-vnet');
  t.same(
    { ...c, raw: undefined },
    {
      cniVersion: '0.3.0',
      name: 'azure',
      type: 'azure-vnet',
      mode: 'bridge',
      dataplane: 'iptables',
      dataplaneFallback: false,
      bridge: 'azure0',
      master: 'eth0',
      vnetCidrs: [],
      bpfRoot: '/sys/fs/bpf/vnet-cni',
      maxPods: 250,
      logFile: '/var/log/azure-vnet.log',
      logLevel: 'info',
      stateDir: '/var/lib/vnet-cni',
      nodeName: os.hostname(),
      ipam: { type: 'azure-vnet-ipam', environment: 'azure', wireserverUrl: 'http://168.63.129.16', wireserverTimeoutMs: 5000 },
      raw: undefined,
    },
  );
  t.equal(c.raw, ORIGINAL_BRIDGE, 'raw is the object given');
  t.equal(c.raw.adapterName, '');
});

t.test('the original transparent entry, with vnetCidrs as the comma-separated string the original uses', async (t) => {
  const c = parseNetConf(ORIGINAL_TRANSPARENT, 'azure-vnet');
  t.equal(c.mode, 'transparent');
  t.equal(c.logLevel, 'debug');
  t.same(c.vnetCidrs, ['10.0.0.0/8', '172.16.1.0/24']);
});

t.test('our keys', async (t) => {
  const c = parseNetConf(
    {
      cniVersion: '1.1.0',
      name: 'vnet',
      type: 'azure-vnet',
      dataplane: 'bridge-iptables',
      dataplaneFallback: true,
      vnetCidrs: ['10.1.2.3/16', '192.168.0.0/24'],
      maxPods: 30,
      logFile: '/tmp/x/../azure.log',
      logLevel: 'WARN',
      stateDir: '/run/vnet',
      daemonSocket: '/run/vnet-cni.sock',
      bpfRoot: '/sys/fs/bpf/mine',
      nodeName: 'vm1',
      master: 'eth1',
      ipam: { type: 'azure-vnet-ipam', environment: 'static', subnet: '10.240.0.0/16', addresses: ['10.240.0.5', '10.240.0.6'], gateway: '10.240.0.1', wireserverTimeoutMs: 100 },
    },
    'azure-vnet',
  );
  t.equal(c.dataplane, 'iptables', 'bridge-iptables is an alias of iptables');
  t.equal(c.dataplaneFallback, true);
  t.same(c.vnetCidrs, ['10.1.0.0/16', '192.168.0.0/24'], 'host bits cleared');
  t.equal(c.maxPods, 30);
  t.equal(c.logFile, '/tmp/azure.log', 'path normalized');
  t.equal(c.logLevel, 'warn');
  t.equal(c.daemonSocket, '/run/vnet-cni.sock');
  t.equal(c.master, 'eth1');
  t.same(c.ipam, { type: 'azure-vnet-ipam', environment: 'static', wireserverUrl: 'http://168.63.129.16', wireserverTimeoutMs: 100, subnet: '10.240.0.0/16', addresses: ['10.240.0.5', '10.240.0.6'], gateway: '10.240.0.1' });
  t.equal(parseNetConf({ cniVersion: '1.1.0', name: 'n', type: 'azure-vnet', dataplane: 'ebpf' }, 'azure-vnet').dataplane, 'ebpf');
});

t.test('ipam defaults per environment and plugin', async (t) => {
  const file = parseNetConf({ cniVersion: '1.0.0', name: 'n', type: 'azure-vnet', ipam: { type: 'azure-vnet-ipam', environment: 'fileIpam' } }, 'azure-vnet');
  t.equal(file.ipam.interfacesFile, '/etc/kubernetes/interfaces.json', "fileIpam's default file, as the original");
  const ipam = parseNetConf({ cniVersion: '1.0.0', name: 'n', type: 'azure-vnet' }, 'azure-vnet-ipam');
  t.equal(ipam.logFile, '/var/log/azure-vnet-ipam.log');
  t.same(ipam.ipam, { type: 'azure-vnet-ipam', environment: 'azure', wireserverUrl: 'http://168.63.129.16', wireserverTimeoutMs: 5000 }, 'absent ipam section gets defaults');
  const url = parseNetConf({ cniVersion: '1.0.0', name: 'n', type: 'azure-vnet', ipam: { wireserverUrl: 'http://127.0.0.1:8080/' } }, 'azure-vnet');
  t.equal(url.ipam.wireserverUrl, 'http://127.0.0.1:8080', 'trailing slash dropped');
});

t.test('azure-vnet-ipam delegated to by another plugin ignores that plugin\'s own keys', async (t) => {
  const c = parseNetConf({ cniVersion: '0.4.0', name: 'mv', type: 'macvlan', mode: 'vepa', master: 'ens3.100.long.name', ipam: { type: 'azure-vnet-ipam' } }, 'azure-vnet-ipam');
  t.equal(c.mode, 'bridge');
  t.equal(c.master, 'eth0');
  t.throws(() => parseNetConf({ cniVersion: '0.4.0', name: 'mv', type: 'azure-vnet', mode: 'vepa' }, 'azure-vnet-ipam'), { message: /^mode 'vepa' is not supported by vnet-cni/ }, 'but validates them when azure-vnet delegates');
});

const base = { cniVersion: '1.1.0', name: 'azure', type: 'azure-vnet' };
const INVALID: Array<[string, Record<string, unknown>, RegExp]> = [
  ['name missing', { name: undefined }, /^name must be a network name .*; got nothing$/],
  ['name not a string', { name: 5 }, /^name must be a network name .*; got 5$/],
  ['type missing', { type: undefined }, /^type must be the plugin name/],
  ['bridge too long', { bridge: 'azure0123456789x' }, /^bridge must be an interface name of 1-15 bytes/],
  ['master with slash', { master: 'eth/0' }, /^master must be an interface name/],
  ['dataplaneFallback not bool', { dataplaneFallback: 'yes' }, /^dataplaneFallback must be true or false; got 'yes'$/],
  ['vnetCidrs prefix 33', { vnetCidrs: ['10.0.0.0/33'] }, /^vnetCidrs\[0\] must be an IPv4 CIDR/],
  ['vnetCidrs IPv6', { vnetCidrs: ['fd00::/8'] }, /^vnetCidrs\[0\] must be an IPv4 CIDR/],
  ['vnetCidrs string with a bad item', { vnetCidrs: '10.0.0.0/8,nope' }, /^vnetCidrs\[1\] must be an IPv4 CIDR .*; got 'nope'$/],
  ['maxPods fractional', { maxPods: 2.5 }, /^maxPods must be an integer from 1 to 250; got 2\.5$/],
  ['maxPods string', { maxPods: '30' }, /^maxPods must be an integer from 1 to 250; got '30'$/],
  ['logLevel unknown', { logLevel: 'loud' }, /^logLevel must be one of trace, debug, info, warn, error, fatal, silent; got 'loud'$/],
  ['stateDir relative', { stateDir: 'var/lib' }, /^stateDir must be an absolute path; got 'var\/lib'$/],
  ['daemonSocket relative', { daemonSocket: 'sock' }, /^daemonSocket must be an absolute path/],
  ['bpfRoot relative', { bpfRoot: 'bpf' }, /^bpfRoot must be an absolute path/],
  ['nodeName empty', { nodeName: '' }, /^nodeName must be a node name of 1-253 characters/],
  ['dns not an object', { dns: ['8.8.8.8'] }, /^dns must be an object/],
  ['dns.nameservers not strings', { dns: { nameservers: [1] } }, /^dns\.nameservers must be a list of strings/],
  ['ipsToRouteViaHost bad ip', { ipsToRouteViaHost: ['169.254.20'] }, /^ipsToRouteViaHost\[0\] must be an IPv4 address/],
  ['capabilities not an object', { capabilities: true }, /^capabilities must be an object; got true$/],
  ['runtimeConfig not an object', { runtimeConfig: 'x' }, /^runtimeConfig must be an object/],
  ['ipam not an object', { ipam: 'azure' }, /^ipam must be an object; got 'azure'$/],
  ['ipam.type other plugin', { ipam: { type: 'host-local' } }, /^ipam\.type 'host-local' is not supported by vnet-cni: .*; use "ipam": \{"type": "azure-vnet-ipam"\}$/],
  ['ipam.environment unknown', { ipam: { environment: 'mas' } }, /^ipam\.environment must be one of azure, fileIpam, static, kubernetes; got 'mas'$/],
  ['ipam.wireserverUrl not http', { ipam: { wireserverUrl: 'ftp://x' } }, /^ipam\.wireserverUrl must be an http:\/\/ or https:\/\/ URL; got 'ftp:\/\/x'$/],
  ['ipam.wireserverUrl garbage', { ipam: { wireserverUrl: 'not a url' } }, /^ipam\.wireserverUrl must be an http/],
  ['ipam.wireserverTimeoutMs 0', { ipam: { wireserverTimeoutMs: 0 } }, /^ipam\.wireserverTimeoutMs must be an integer from 1 to 300000; got 0$/],
  ['ipam.interfacesFile relative', { ipam: { environment: 'fileIpam', interfacesFile: 'interfaces.json' } }, /^ipam\.interfacesFile must be an absolute path/],
  ['ipam.subnet bad', { ipam: { subnet: '10.240.0.0' } }, /^ipam\.subnet must be an IPv4 CIDR/],
  ['ipam.gateway not ip', { ipam: { gateway: 'gw' } }, /^ipam\.gateway must be an IPv4 address; got 'gw'$/],
  ['ipam.gateway outside subnet', { ipam: { subnet: '10.240.0.0/16', gateway: '10.1.0.1' } }, /^ipam\.gateway must be an address inside ipam\.subnet 10\.240\.0\.0\/16; got '10\.1\.0\.1'$/],
  ['static without subnet', { ipam: { environment: 'static', addresses: ['10.0.0.5'] } }, /^ipam\.subnet is required when ipam\.environment is 'static'/],
  ['static without addresses', { ipam: { environment: 'static', subnet: '10.0.0.0/24' } }, /^ipam\.addresses is required/],
  ['static address outside subnet', { ipam: { environment: 'static', subnet: '10.0.0.0/24', addresses: ['10.0.0.5', '10.0.1.5'] } }, /^ipam\.addresses\[1\] must be an address inside ipam\.subnet 10\.0\.0\.0\/24; got '10\.0\.1\.5'$/],
  ['static duplicate address', { ipam: { environment: 'static', subnet: '10.0.0.0/24', addresses: ['10.0.0.5', '10.0.0.5'] } }, /^ipam\.addresses\[1\] must be listed once/],
  ['static address not IPv4', { ipam: { environment: 'static', subnet: '10.0.0.0/24', addresses: ['10.0.0.500'] } }, /^ipam\.addresses\[0\] must be an IPv4 address/],
];

t.test('invalid values: code 7 and a message naming the field', async (t) => {
  for (const [name, patch, msg] of INVALID) {
    const raw: Record<string, unknown> = { ...base, ...patch };
    for (const [k, v] of Object.entries(patch)) if (v === undefined) delete raw[k];
    let err: unknown;
    try {
      parseNetConf(raw, 'azure-vnet');
    } catch (e) {
      err = e;
    }
    t.type(err, InvalidConfigError, `${name}: InvalidConfigError`);
    t.equal((err as InvalidConfigError | undefined)?.cniCode, CniCode.InvalidConfig, `${name}: code 7`);
    t.match((err as Error | undefined)?.message, msg, `${name}: message`);
  }
});

t.test('decodeStdin', async (t) => {
  t.same(decodeStdin(Buffer.from('{"a":1}')), { a: 1 });
  t.throws(() => decodeStdin(''), DecodeError);
  t.throws(() => decodeStdin('  \n'), { message: /stdin is empty/ });
  t.throws(() => decodeStdin('null'), { message: /must be a JSON object/ });
  t.throws(() => decodeStdin(Buffer.alloc(MAX_STDIN_BYTES + 1, 0x20)), { message: /larger than/ });
  // Nesting: the top-level object is level 1; JSON.stringify would throw a RangeError at a few thousand.
  const nested = (levels: number): string => `{"cniVersion":"1.1.0","x":${'['.repeat(levels)}${']'.repeat(levels)}}`;
  t.equal(nestingDepth(decodeStdin(nested(MAX_JSON_DEPTH - 1)), 1000), MAX_JSON_DEPTH, 'the deepest accepted config');
  t.throws(() => decodeStdin(nested(MAX_JSON_DEPTH)), { name: 'DecodeError', message: /deeper than 64 levels/ }, 'one level more: a decode failure');
  t.throws(() => decodeStdin(nested(100_000)), { name: 'DecodeError', message: /deeper than 64 levels/ }, 'no stack overflow however deep');
  t.equal(nestingDepth(JSON.parse(nested(100_000)), 10), 11, 'the count stops past its limit');
  t.equal(nestingDepth({ a: [{ b: {} }], c: 1 }, 64), 4);
});

t.test('GC attachments', async (t) => {
  t.same(parseAttachments({}), [], 'none given: empty list');
  t.same(parseAttachments({ 'cni.dev/valid-attachments': [{ containerID: 'a', ifname: 'eth0' }], 'cni.dev/attachments': [{ containerID: 'b', ifname: 'eth0' }] }), [{ containerId: 'a', ifName: 'eth0' }], 'the 1.1.0 key wins');
  t.throws(() => parseAttachments({ 'cni.dev/valid-attachments': {} }), { message: /^cni\.dev\/valid-attachments must be a list/ });
  t.throws(() => parseAttachments({ 'cni.dev/valid-attachments': ['a'] }), { message: /^cni\.dev\/valid-attachments\[0\] must be an object/ });
});
