// parseEnv / parseCniArgs: what each verb requires, libcni's interface-name and
// container-ID rules, CNI_ARGS with IgnoreUnknown. All failures are code 4.
import fs from 'node:fs';
import t from 'tap';
import { CniCode, InvalidEnvError } from '../../control/errors.js';
import { parseCniArgs, parseCommand, parseEnv, validateIfName } from '../../cni/env.js';
import { tempDir } from './cni-helpers.js';

t.test('commands', async (t) => {
  for (const c of ['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS']) t.equal(parseCommand({ CNI_COMMAND: c }), c);
  t.throws(() => parseCommand({}), { message: /CNI_COMMAND is not set; want one of ADD, DEL, CHECK, VERSION, GC, STATUS/ });
  t.throws(() => parseCommand({ CNI_COMMAND: 'add' }), { message: /CNI_COMMAND "add" is unknown/, cniCode: CniCode.InvalidEnv });
});

t.test('what each verb requires', async (t) => {
  const dir = tempDir(t, 'env');
  const netns = `${dir}/ns`;
  fs.writeFileSync(netns, '');
  const full = { CNI_CONTAINERID: 'abc', CNI_NETNS: netns, CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin::/usr/lib/cni' };
  t.same(parseEnv('ADD', full), { command: 'ADD', containerId: 'abc', netns, ifName: 'eth0', args: {}, path: ['/opt/cni/bin', '/usr/lib/cni'] });
  t.same(parseEnv('GC', { CNI_PATH: '/x' }), { command: 'GC', containerId: '', netns: '', ifName: '', args: {}, path: ['/x'] }, 'GC needs no container');
  t.same(parseEnv('STATUS', { CNI_CONTAINERID: '../bad', CNI_IFNAME: '/' }).containerId, '', 'STATUS ignores per-container variables');
  t.equal(parseEnv('DEL', { ...full, CNI_NETNS: '' }).netns, '', 'DEL without netns (libcni sends CNI_NETNS=)');
  t.equal(parseEnv('DEL', { ...full, CNI_NETNS: '/proc/999999999/ns/net' }).netns, '/proc/999999999/ns/net', 'DEL with a netns that is gone');
  t.equal(parseEnv('CHECK', { ...full, CNI_NETNS: '/var/run/netns/gone' }).netns, '/var/run/netns/gone', 'CHECK leaves a missing netns to the agent');
  t.throws(() => parseEnv('ADD', { ...full, CNI_NETNS: `${dir}/none` }), { message: /does not exist/ });
  t.throws(() => parseEnv('CHECK', { CNI_CONTAINERID: 'a', CNI_IFNAME: 'eth0' }), { message: 'CNI_NETNS is required for CHECK' });
  t.throws(() => parseEnv('DEL', { CNI_NETNS: netns }), { message: 'CNI_CONTAINERID, CNI_IFNAME are required for DEL' });
  t.throws(() => parseEnv('DEL', { ...full, CNI_NETNS: 'rel' }), { message: /must be an absolute path/ });
});

t.test('container IDs', async (t) => {
  const ok = ['a', '0', 'c0ffee', 'abc_def.ghi-jkl', 'A'.repeat(64)];
  const bad = ['', '-abc', '.abc', '_abc', 'a/b', '../x', 'a b', 'a\nb', 'a:b', 'ä'];
  for (const id of ok) t.doesNotThrow(() => parseEnv('DEL', { CNI_CONTAINERID: id, CNI_IFNAME: 'eth0' }), id);
  for (const id of bad.filter(Boolean)) {
    t.throws(() => parseEnv('DEL', { CNI_CONTAINERID: id, CNI_IFNAME: 'eth0' }), { message: /^CNI_CONTAINERID .* is invalid/, cniCode: 4 }, JSON.stringify(id));
  }
});

t.test('interface names', async (t) => {
  for (const name of ['eth0', 'a', 'x'.repeat(15), 'net-1.2_3', 'é'.repeat(7)]) t.doesNotThrow(() => validateIfName(name), name);
  const bad: Array<[string, RegExp]> = [
    ['', /it is empty/],
    ['x'.repeat(16), /longer than 15 bytes/],
    ['é'.repeat(8), /longer than 15 bytes/],
    ['.', /'\.' and '\.\.' are not allowed/],
    ['..', /not allowed/],
    ['eth/0', /must not contain/],
    ['eth:0', /must not contain/],
    ['eth 0', /must not contain/],
    ['eth\t0', /must not contain/],
  ];
  for (const [name, msg] of bad) t.throws(() => validateIfName(name), { message: msg, name: 'InvalidEnvError' }, JSON.stringify(name));
});

t.test('CNI_ARGS', async (t) => {
  t.same(parseCniArgs(''), {});
  t.same(parseCniArgs('K8S_POD_NAME=web-0;K8S_POD_NAMESPACE=default'), { K8S_POD_NAME: 'web-0', K8S_POD_NAMESPACE: 'default' });
  t.same(parseCniArgs('IgnoreUnknown=1;FOO=bar;K8S_POD_NAME=a;'), { IgnoreUnknown: '1', FOO: 'bar', K8S_POD_NAME: 'a' }, 'unknown keys kept with IgnoreUnknown, trailing ; ok');
  t.same(parseCniArgs('IgnoreUnknown=true;X=a=b'), { IgnoreUnknown: 'true', X: 'a=b' }, 'value may hold =');
  t.same(parseCniArgs('K8S_POD_NAME='), { K8S_POD_NAME: '' }, 'empty value');
  t.same(parseCniArgs('K8S_POD_NAME=a;K8S_POD_NAME=b'), { K8S_POD_NAME: 'b' }, 'last wins');
  const bad: Array<[string, RegExp]> = [
    ['FOO=1', /unknown keys "FOO"/],
    ['IgnoreUnknown=0;FOO=1', /unknown keys "FOO"/],
    ['IgnoreUnknown=yes', /IgnoreUnknown="yes" is invalid/],
    ['=value', /entry "=value" is not KEY=VALUE/],
    ['K8S_POD_NAME', /is not KEY=VALUE/],
    ['IgnoreUnknown=1;bad key=1', /CNI_ARGS key "bad key" is invalid/],
  ];
  for (const [raw, msg] of bad) t.throws(() => parseCniArgs(raw), { message: msg, cniCode: CniCode.InvalidEnv }, raw);
  t.throws(() => parseCniArgs('X'), InvalidEnvError);
});
