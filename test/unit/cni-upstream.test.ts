// Every upstream azure-vnet key is honoured, refused with a clear code-7
// message, or ignored for a documented reason; upstream's shipped Linux
// conflists either validate or are refused naming the key and value.
import t from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CniCode, InvalidConfigError } from '../../control/errors.js';
import { parseNetConf } from '../../cni/config.js';
import { UPSTREAM_KEYS } from '../../cni/upstream.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const FIXTURES = path.join(REPO, 'test', 'fixtures', 'upstream-conflists');

/** Upstream's NetworkConfig (cni/netconfig.go) JSON keys, and its IPAM struct's, plus old conflists' networkMonitor. */
const UPSTREAM_NETWORK_CONFIG = [
  'cniVersion', 'name', 'type', 'mode', 'master', 'adapterName', 'bridge', 'logLevel', 'logTarget', 'infraVnetAddressSpace',
  'ipv6Mode', 'serviceCidrs', 'vnetCidrs', 'podNamespaceForDualNetwork', 'ipsToRouteViaHost', 'multiTenancy', 'enableSnatOnHost',
  'enableExactMatchForPodName', 'disableHairpinOnHostInterface', 'disableIPTableLock', 'disableAsyncDelete', 'cnsurl',
  'executionMode', 'ipam', 'dns', 'runtimeConfig', 'windowsSettings', 'AdditionalArgs', 'wireServerIP', 'networkMonitor',
];
const UPSTREAM_IPAM = ['mode', 'type', 'environment', 'addressSpace', 'subnet', 'ipAddress', 'queryInterval'];

/** What each shipped conflist must do: undefined = works, else the key and value the code-7 message names. */
const EXPECTED: Record<string, { mode?: string; refused?: RegExp }> = {
  'azure-linux.conflist': { mode: 'transparent' },
  'azure-linux-bridge.conflist': { mode: 'bridge' },
  'azure-linux-multitenancy.conflist': { refused: /^multiTenancy true is not supported by vnet-cni: .*; remove the key or set it to false$/ },
  'azure-linux-multitenancy-transparent-vlan.conflist': { refused: /^mode 'transparent-vlan' is not supported by vnet-cni: .*; use "mode": "bridge" or "transparent"$/ },
  'azure-linux-transparent-tunnel.conflist': { refused: /^mode 'transparent-tunnel' is not supported by vnet-cni: .*; use "mode": "bridge" or "transparent"$/ },
  'azure-linux-swift-overlay-consolidated.conflist': { refused: /^executionMode 'v4swift' is not supported by vnet-cni: .*; remove the key$/ },
  'azure-linux-swift-overlay-dualstack.conflist': { refused: /^executionMode 'v4swift' is not supported by vnet-cni/ },
  'azure-linux-dualstack-overlay.conflist': { refused: /^executionMode 'v4swift' is not supported by vnet-cni/ },
};

/** The azure-vnet entry as libcni hands it to the plugin (name and cniVersion injected). */
function entryOf(file: string): Record<string, unknown> {
  const list = JSON.parse(readFileSync(path.join(FIXTURES, file), 'utf8')) as { cniVersion: string; name: string; plugins: Record<string, unknown>[] };
  return { cniVersion: list.cniVersion, name: list.name, ...list.plugins[0] };
}

function errorOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

t.test('every shipped Linux conflist works or is refused with code 7 naming the key', async (t) => {
  const files = readdirSync(FIXTURES).filter((f) => f.endsWith('.conflist')).sort();
  t.same(files, Object.keys(EXPECTED).sort(), 'every fixture has an expectation');
  for (const file of files) {
    const want = EXPECTED[file]!;
    const entry = entryOf(file);
    const err = errorOf(() => parseNetConf(entry, 'azure-vnet'));
    if (want.refused) {
      t.type(err, InvalidConfigError, `${file}: refused`);
      t.equal((err as InvalidConfigError).cniCode, CniCode.InvalidConfig, `${file}: code 7`);
      t.match((err as Error).message, want.refused, `${file}: ${(err as Error).message}`);
      t.doesNotThrow(() => parseNetConf(entry, 'azure-vnet', { refuse: false }), `${file}: DEL/GC under it still parse (cleanup)`);
    } else {
      t.equal(err, undefined, `${file}: accepted`);
      const c = parseNetConf(entry, 'azure-vnet');
      t.equal(c.mode, want.mode, `${file}: mode ${want.mode}`);
      t.same(c.raw.ipsToRouteViaHost, ['169.254.20.10'], `${file}: ipsToRouteViaHost kept for the agent`);
    }
  }
});

t.test('every upstream key is in the table, and the table in docs/cni.md', async (t) => {
  const known = new Set(UPSTREAM_KEYS.map((k) => k.key));
  for (const key of UPSTREAM_NETWORK_CONFIG) t.ok(known.has(key), `${key} has a decision`);
  for (const key of UPSTREAM_IPAM) t.ok(known.has(`ipam.${key}`), `ipam.${key} has a decision`);
  const doc = readFileSync(path.join(REPO, 'docs', 'cni.md'), 'utf8');
  for (const k of UPSTREAM_KEYS) t.match(doc, `| \`${k.key}\` |`, `docs/cni.md lists ${k.key}`);
});

const base = { cniVersion: '1.0.0', name: 'azure', type: 'azure-vnet', ipam: { type: 'azure-vnet-ipam' } };

t.test('each refused value: code 7, the key, the value and what to do; harmless values pass', async (t) => {
  const refused: [Record<string, unknown>, RegExp][] = [
    [{ mode: 'tunnel' }, /^mode 'tunnel' is not supported .*use "mode": "bridge" or "transparent"$/],
    [{ mode: 'transparent-vlan' }, /^mode 'transparent-vlan' is not supported/],
    [{ multiTenancy: true }, /^multiTenancy true is not supported/],
    [{ enableSnatOnHost: true }, /^enableSnatOnHost true is not supported .*remove the key or set it to false$/],
    [{ executionMode: 'v4swift' }, /^executionMode 'v4swift' is not supported .*pod IPs from the NIC/],
    [{ ipv6Mode: 'ipv6nat' }, /^ipv6Mode 'ipv6nat' is not supported by vnet-cni: vnet-cni is IPv4-only; remove the key$/],
    [{ infraVnetAddressSpace: '10.0.0.0/16' }, /^infraVnetAddressSpace '10\.0\.0\.0\/16' is not supported/],
    [{ podNamespaceForDualNetwork: ['ns1'] }, /^podNamespaceForDualNetwork \["ns1"\] is not supported/],
    [{ wireServerIP: '10.0.0.1' }, /^wireServerIP '10\.0\.0\.1' is not supported .*ipam\.wireserverUrl/],
    [{ ipam: { type: 'azure-cns' } }, /^ipam\.type 'azure-cns' is not supported by vnet-cni: pod IPs from the Container Networking Service are not built; use "ipam": \{"type": "azure-vnet-ipam"\}$/],
    [{ ipam: { type: 'host-local' } }, /^ipam\.type 'host-local' is not supported/],
    [{ ipam: { type: 'azure-vnet-ipam', mode: 'v4overlay' } }, /^ipam\.mode 'v4overlay' is not supported/],
    [{ ipam: { type: 'azure-vnet-ipam', ipAddress: '10.240.0.9' } }, /^ipam\.ipAddress '10\.240\.0\.9' is not supported/],
  ];
  for (const [patch, msg] of refused) {
    const err = errorOf(() => parseNetConf({ ...base, ...patch }, 'azure-vnet'));
    t.equal((err as InvalidConfigError | undefined)?.cniCode, CniCode.InvalidConfig, `${JSON.stringify(patch)}: code 7`);
    t.match((err as Error | undefined)?.message, msg, `${JSON.stringify(patch)}: message`);
  }
  const harmless: Record<string, unknown>[] = [
    { multiTenancy: false }, { enableSnatOnHost: false }, { executionMode: '' }, { ipv6Mode: '' }, { infraVnetAddressSpace: '' },
    { podNamespaceForDualNetwork: [] }, { wireServerIP: '168.63.129.16' }, { adapterName: 'eth0' }, { logTarget: 'syslog' },
    { serviceCidrs: '10.0.0.0/16' }, { enableExactMatchForPodName: true }, { cnsurl: 'http://localhost:10090' },
    { disableHairpinOnHostInterface: true }, { disableIPTableLock: true }, { disableAsyncDelete: true },
    { windowsSettings: { enableLoopbackDSR: true } }, { AdditionalArgs: [{ Name: 'EndpointPolicy', Value: {} }] },
    { networkMonitor: { name: 'azure-cnms' } }, { ipam: { type: 'azure-vnet-ipam', addressSpace: 'LocalDefaultAddressSpace', queryInterval: '10' } },
  ];
  for (const patch of harmless) t.doesNotThrow(() => parseNetConf({ ...base, ...patch }, 'azure-vnet'), `${JSON.stringify(patch)}: accepted`);
});

t.test('azure-vnet-ipam serving another plugin: the main plugin keys are that plugin\'s; its own ipam keys still count', async (t) => {
  t.doesNotThrow(() => parseNetConf({ ...base, type: 'macvlan', mode: 'vepa', multiTenancy: true }, 'azure-vnet-ipam'));
  t.throws(() => parseNetConf({ ...base, type: 'macvlan', ipam: { type: 'azure-vnet-ipam', mode: 'v4overlay' } }, 'azure-vnet-ipam'), { message: /^ipam\.mode 'v4overlay'/ });
});
