// Spec versions: negotiation, which verbs each version allows, the result
// conversion per version, and prevResult from every supported shape reaching
// the agent in the internal (1.1.0) shape.
import t from 'tap';
import { CniCode, IncompatibleVersionError, InvalidConfigError, VnetError } from '../../control/errors.js';
import { createLogger } from '../../control/log.js';
import type { CniCall, CniResult } from '../../control/types.js';
import { runPlugin } from '../../cni/skel.js';
import { compareVersions, formatResult, negotiateVersion, parsePrevResult, requireVerbSupport, SUPPORTED_VERSIONS } from '../../cni/version.js';
import { fakeAgent, type FakeCall } from './cni-fake-agent.js';

t.test('negotiation', async (t) => {
  for (const v of SUPPORTED_VERSIONS) t.equal(negotiateVersion(v), v);
  for (const v of ['0.1.0', '0.2.0', '1.2.0', '1.0', '', 1, null, undefined]) {
    t.throws(() => negotiateVersion(v), { name: 'IncompatibleVersionError', cniCode: CniCode.IncompatibleVersion }, JSON.stringify(v) ?? 'undefined');
  }
  t.ok(compareVersions('0.10.0', '0.4.0') > 0, 'numeric, not lexical');
  t.equal(compareVersions('1.1.0', '1.1.0'), 0);
});

t.test('verbs per version', async (t) => {
  const allowed: Record<string, string[]> = {
    '0.3.0': ['ADD', 'DEL'],
    '0.3.1': ['ADD', 'DEL'],
    '0.4.0': ['ADD', 'DEL', 'CHECK'],
    '1.0.0': ['ADD', 'DEL', 'CHECK'],
    '1.1.0': ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS'],
  };
  for (const v of SUPPORTED_VERSIONS) {
    for (const verb of ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS'] as const) {
      if (allowed[v]!.includes(verb)) t.doesNotThrow(() => requireVerbSupport(verb, v), `${verb} on ${v}`);
      else t.throws(() => requireVerbSupport(verb, v), IncompatibleVersionError, `${verb} refused on ${v}`);
    }
  }
});

t.test('formatResult', async (t) => {
  const dual: CniResult = {
    cniVersion: '1.1.0',
    interfaces: [{ name: 'eth0', mac: '02:00:00:00:00:01', sandbox: '/var/run/netns/p' }],
    ips: [{ address: '10.0.0.5/24' }, { address: 'fd00::5/64', gateway: 'fd00::1' }],
  };
  t.same(formatResult(dual, '0.3.1'), {
    cniVersion: '0.3.1',
    interfaces: [{ name: 'eth0', mac: '02:00:00:00:00:01', sandbox: '/var/run/netns/p' }],
    ips: [
      { version: '4', interface: 0, address: '10.0.0.5/24' },
      { version: '6', interface: 0, address: 'fd00::5/64', gateway: 'fd00::1' },
    ],
  });
  t.same(formatResult({ cniVersion: '1.1.0', ips: [{ address: '10.0.0.5/24' }] }, '1.0.0'), { cniVersion: '1.0.0', ips: [{ address: '10.0.0.5/24' }] }, 'IPAM result: no interface index');
  t.throws(() => formatResult({ cniVersion: '1.1.0', interfaces: [{ name: 'eth0', mac: '', sandbox: '/x' }] }, '1.0.0'), { message: /sandbox interface eth0 has no mac/ });
  t.throws(() => formatResult({ cniVersion: '1.1.0', interfaces: [{ name: 'eth0', mac: 'm', sandbox: '/x' }], ips: [{ address: '10.0.0.5/24', interface: 3 }] }, '1.0.0'), VnetError);
});

/** One prevResult in each supported shape; all mean the same thing. */
const PREV: Record<string, unknown> = {
  '0.3.0': {
    cniVersion: '0.3.0',
    interfaces: [
      { name: 'azv1', mac: 'aa:aa:aa:00:00:01' },
      { name: 'eth0', mac: 'aa:aa:aa:00:00:02', sandbox: '/var/run/netns/p' },
    ],
    ips: [{ version: '4', interface: 1, address: '10.240.0.5/16', gateway: '10.240.0.1' }],
    routes: [{ dst: '0.0.0.0/0', gw: '10.240.0.1' }],
    dns: {},
  },
  '0.4.0': {
    cniVersion: '0.4.0',
    interfaces: [
      { name: 'azv1', mac: 'aa:aa:aa:00:00:01' },
      { name: 'eth0', mac: 'aa:aa:aa:00:00:02', sandbox: '/var/run/netns/p' },
    ],
    ips: [{ version: '4', address: '10.240.0.5/16', gateway: '10.240.0.1', interface: 1 }],
    routes: [{ dst: '0.0.0.0/0', gw: '10.240.0.1' }],
    dns: {},
  },
  '1.0.0': {
    cniVersion: '1.0.0',
    interfaces: [
      { name: 'azv1', mac: 'aa:aa:aa:00:00:01' },
      { name: 'eth0', mac: 'aa:aa:aa:00:00:02', sandbox: '/var/run/netns/p' },
    ],
    ips: [{ interface: 1, address: '10.240.0.5/16', gateway: '10.240.0.1' }],
    routes: [{ dst: '0.0.0.0/0', gw: '10.240.0.1' }],
    dns: {},
  },
};
const INTERNAL: CniResult = {
  cniVersion: '1.1.0',
  interfaces: [
    { name: 'azv1', mac: 'aa:aa:aa:00:00:01' },
    { name: 'eth0', mac: 'aa:aa:aa:00:00:02', sandbox: '/var/run/netns/p' },
  ],
  ips: [{ address: '10.240.0.5/16', gateway: '10.240.0.1', interface: 1 }],
  routes: [{ dst: '0.0.0.0/0', gw: '10.240.0.1' }],
  dns: {},
};

t.test('prevResult of every shape reaches the agent in the internal shape', async (t) => {
  for (const [shape, prevResult] of Object.entries(PREV)) {
    // 0.3.x has no CHECK: deliver its prevResult on DEL; the others on CHECK.
    const command = shape === '0.3.0' ? 'DEL' : 'CHECK';
    const calls: FakeCall[] = [];
    const out: string[] = [];
    const code = await runPlugin({
      plugin: 'azure-vnet',
      env: { CNI_COMMAND: command, CNI_CONTAINERID: 'p1', CNI_NETNS: '/proc/self/ns/net', CNI_IFNAME: 'eth0' },
      stdin: JSON.stringify({ cniVersion: shape, name: 'azure', type: 'azure-vnet', prevResult }),
      stdout: { write: (s: string) => out.push(s) },
      loggerFactory: () => createLogger({ name: 'test', level: 'silent' }),
      agentFactory: async () => fakeAgent((c) => calls.push(c)),
    });
    t.equal(code, 0, `${shape}: ${out.join('')}`);
    const seen = calls.find((c) => c.method === command.toLowerCase()) as { call: CniCall } | undefined;
    t.same(seen?.call.prevResult, INTERNAL, `${shape} prevResult converted`);
  }
});

t.test('prevResult that cannot be read', async (t) => {
  t.throws(() => parsePrevResult({ cniVersion: '0.2.0', ip4: { ip: '10.0.0.5/24' } }), { message: /0\.1\.0\/0\.2\.0 shape/ });
  t.throws(() => parsePrevResult([]), InvalidConfigError);
  t.throws(() => parsePrevResult({ interfaces: [{ name: 'eth0' }], ips: [{ address: '10.0.0.5/24', interface: 1 }] }), { message: /^prevResult\.ips\[0\]\.interface must be an integer from 0 to 0; got 1$/ });
  t.throws(() => parsePrevResult({ ips: [{ address: '10.0.0.5/24', interface: 0 }] }), { message: /^prevResult\.ips\[0\]\.interface must be absent when there are no interfaces/ });
  t.throws(() => parsePrevResult({ routes: [{ dst: 'default' }] }), { message: /^prevResult\.routes\[0\]\.dst must be an address with a prefix length/ });
  t.throws(() => parsePrevResult({ ips: [{ address: '10.0.0.5/24', gateway: 'x' }] }), { message: /^prevResult\.ips\[0\]\.gateway must be an IP address; got 'x'$/ });
  t.throws(() => parsePrevResult({ interfaces: [{ mac: 'm' }] }), { message: /^prevResult\.interfaces\[0\]\.name must be a non-empty string/ });
  t.same(parsePrevResult({ cniVersion: '1.0.0', ips: null }), { cniVersion: '1.1.0' }, 'null lists are absent');
});
