// The addon and the loader: errors, verifier logs, pins that outlive the
// process's handles, tc attachments inside a netns (and the worker thread
// always coming back to its own netns), probeKernel.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { native, type NativeError } from '../../native/index.js';
import { EbpfPrograms, TC_HANDLE, TC_PRIORITY, probeKernel } from '../../control/dataplane/ebpf/programs.js';
import { DataplaneUnavailableError } from '../../control/errors.js';
import { cleanupStale, ensureBpffs, Netns, pinRootFor, removePinRoot, repoDir, unavailableReason } from './helpers/env.js';
import { baseConfig, POD1, POD2 } from './helpers/fixture.js';

const skip = unavailableReason() ?? false;
const bpfDir = path.join(repoDir(), 'bpf');

t.before(async () => {
  if (skip) return;
  await cleanupStale();
  await ensureBpffs();
});

t.test('a verifier rejection carries the verifier log', { skip }, async (t) => {
  const err = await native().loadObject(path.join(bpfDir, 'testdata', 'bad_access.bpf.o')).then<null, NativeError>(
    () => null,
    (e: NativeError) => e,
  );
  t.ok(err, 'load rejected');
  t.equal(err!.op, 'bpf_object__load');
  t.equal(err!.code, 'EACCES');
  t.equal(err!.errno, 13);
  t.match(err!.verifierLog, /invalid access to packet|R\d+ invalid mem access|invalid bpf_context access/, 'the verifier says why');
  t.match(err!.libbpfLog, /bad_access/);
});

t.test('kernel errors carry code, errno and op', { skip }, async (t) => {
  t.throws(() => native().openPinnedMap('/sys/fs/bpf/does-not-exist-vnet'), { code: 'ENOENT', errno: 2, op: 'bpf_obj_get' });
  await t.rejects(native().loadObject('/nonexistent.bpf.o'), { code: 'ENOENT', op: 'bpf_object__open_file' });
  await t.rejects(native().tcQuery({ ifname: 'no-such-if0', direction: 'ingress', handle: 1, priority: 1 }), { code: 'ENODEV', op: 'if_nametoindex' });
  await t.rejects(native().listLinks('/var/run/netns/vnet-no-such-netns'), { code: 'ENOENT', op: 'open(netns)' });
});

t.test('map operations: lookup/update/delete/entries/deleteBatch and per-CPU values', { skip }, async (t) => {
  const root = pinRootFor('mapops');
  t.teardown(() => removePinRoot(root));
  const dp = await EbpfPrograms.open(root, baseConfig);
  t.teardown(() => dp.close());
  const m = native().openPinnedMap(path.join(root, 'maps', 'vnet_endpoints'));
  t.teardown(() => m.close());
  t.match(m.info(), { name: 'vnet_endpoints', keySize: 4, valueSize: 20, maxEntries: 1024, perCpu: false });
  const key = Buffer.from([10, 240, 0, 7]);
  t.equal(m.lookup(key), null);
  t.throws(() => m.update(key, Buffer.alloc(3)), /value must be 20 bytes/);
  m.update(key, Buffer.alloc(20, 1));
  t.same(m.lookup(key), Buffer.alloc(20, 1));
  t.throws(() => m.update(key, Buffer.alloc(20), 1 /* BPF_NOEXIST */), { code: 'EEXIST' });
  t.equal((await m.entries()).length, 1);
  t.equal(await m.deleteBatch([key, Buffer.from([1, 2, 3, 4])]), 1);
  t.equal(m.delete(key), false);
  const counters = native().openPinnedMap(path.join(root, 'maps', 'vnet_reasons'));
  t.teardown(() => counters.close());
  t.equal(counters.info().perCpu, true);
  t.equal(counters.lookup(Buffer.alloc(4))!.length, 8 * native().numPossibleCpus(), 'one slot per possible CPU');
  m.close();
  m.close();
  t.throws(() => m.lookup(key), { code: 'EBADF' }, 'closed handle');
  t.throws(() => native().openPinnedMap(path.join(root, 'progs', 'from_pod')), { code: 'EINVAL' }, 'a program pin is not a map');
});

t.test('pins survive closing every handle; reopening needs no config', { skip }, async (t) => {
  const root = pinRootFor('pins');
  t.teardown(() => removePinRoot(root));
  const first = await EbpfPrograms.open(root, baseConfig);
  first.setEndpoint(POD1.ip, POD1);
  const ids = fs.readdirSync(path.join(root, 'progs')).sort();
  t.same(ids, ['from_nic', 'from_pod', 'to_nic', 'to_pod']);
  t.same(fs.readdirSync(path.join(root, 'maps')).sort(), [
    'vnet_cidrs', 'vnet_config', 'vnet_endpoints', 'vnet_inbound',
    'vnet_pol_cidrs', 'vnet_pol_drops', 'vnet_pol_eps', 'vnet_pol_flows', 'vnet_pol_ids', 'vnet_pol_ports',
    'vnet_reasons', 'vnet_snat_fwd', 'vnet_snat_rev',
  ]);
  const progId = native().openPinnedProgram(path.join(root, 'progs', 'from_pod')).info().id;
  first.close();
  first.close();

  const second = await EbpfPrograms.open(root);
  t.teardown(() => second.close());
  t.match(await second.listEndpoints(), [{ ip: POD1.ip, ifindex: POD1.ifindex, podMac: POD1.podMac }], 'state kept');
  t.match(second.config(), { primaryIp: baseConfig.primaryIp, nicIfindex: 2 });
  t.same(
    [...(await second.cidrs())].sort(),
    [['10.240.0.0/16', 1], ['168.63.129.16/32', 1], ['172.16.0.0/12', 1]],
    'CIDR sets include the wireserver',
  );
  t.equal(native().openPinnedProgram(path.join(root, 'progs', 'from_pod')).info().id, progId, 'same program, not reloaded');

  // A config change rewrites the CIDR set exactly.
  await second.configure({ ...baseConfig, noSnatCidrs: ['10.240.0.0/16'], stackCidrs: ['10.0.0.0/16'] });
  t.same([...(await second.cidrs())].sort(), [['10.0.0.0/16', 2], ['10.240.0.0/16', 1], ['168.63.129.16/32', 1]]);
  await t.rejects(EbpfPrograms.open(pinRootFor('never-loaded')), DataplaneUnavailableError, 'no pins and no config');
  fs.rmSync(pinRootFor('never-loaded'), { recursive: true, force: true });
});

t.test('tc attach/query/detach inside a netns; the worker thread comes back', { skip }, async (t) => {
  const root = pinRootFor('tc');
  const ns = await Netns.create('tc');
  t.teardown(() => ns.delete());
  t.teardown(() => removePinRoot(root));
  await ns.ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0');
  await ns.ip('link', 'add', 'azv1', 'type', 'veth', 'peer', 'name', 'azv1p');
  const nicIndex = await ns.ifindex('eth0');
  const rootLinks = (await native().listLinks()).map((l) => l.name).sort();
  const dp = await EbpfPrograms.open(root, { ...baseConfig, nicIfindex: undefined, nicName: 'eth0' }, { netns: ns.path });
  t.teardown(() => dp.close());
  t.equal(dp.config()!.nicIfindex, nicIndex, 'nicName resolved inside the netns');

  await dp.attachNic();
  await dp.attachNic(); // idempotent
  t.equal(dp.config()!.ctlFlags & 1, 1, 'we created the clsact qdisc and remember it');
  // An existing clsact on the pod veth (someone else's) is fine.
  await ns.exec('tc', 'qdisc', 'add', 'dev', 'azv1', 'clsact');
  const podIndex = await dp.attachPod('azv1');
  t.equal(podIndex, await ns.ifindex('azv1'));
  const hooks = (await dp.attachedHooks()).map((h) => `${h.ifname}/${h.direction}/${h.program}`).sort();
  t.same(hooks, ['azv1/egress/to_pod', 'azv1/ingress/from_pod', 'eth0/egress/to_nic', 'eth0/ingress/from_nic']);
  const tcShow = await ns.exec('tc', 'filter', 'show', 'dev', 'eth0', 'ingress');
  t.match(tcShow, /from_nic/, 'visible to tc');
  t.match(tcShow, /direct-action/);

  t.same((await native().listLinks()).map((l) => l.name).sort(), rootLinks, 'the pool threads are back in our own netns');

  t.equal(await dp.detachPod('azv1'), true);
  t.equal(await dp.detachPod('azv1'), false, 'second detach: nothing there');
  t.match(await ns.exec('tc', 'qdisc', 'show', 'dev', 'azv1'), /clsact/, "someone else's qdisc is left alone");
  await dp.detachNic();
  t.notMatch(await ns.exec('tc', 'qdisc', 'show', 'dev', 'eth0'), /clsact/, 'our own qdisc is removed');
  t.same(await dp.attachedHooks(), []);
  t.equal(
    await native().tcQuery({ ifindex: nicIndex, netns: ns.path, direction: 'ingress', handle: TC_HANDLE, priority: TC_PRIORITY }),
    null,
  );
});

t.test('reload keeps maps and swaps attached programs in place; unloadAll removes everything', { skip }, async (t) => {
  const root = pinRootFor('reload');
  const ns = await Netns.create('reload');
  t.teardown(() => ns.delete());
  t.teardown(() => removePinRoot(root));
  await ns.ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0');
  await ns.ip('link', 'add', 'azv2', 'type', 'veth', 'peer', 'name', 'azv2p');
  const cfg = { ...baseConfig, nicIfindex: await ns.ifindex('eth0') };
  const a = await EbpfPrograms.open(root, cfg, { netns: ns.path });
  await a.attachNic();
  await a.attachPod('azv2');
  a.setEndpoint(POD2.ip, POD2);
  // A pod veth attached by a build before to_pod existed: only from_pod.
  await native().tcDetach({ ifname: 'azv2', netns: ns.path, direction: 'egress', handle: TC_HANDLE, priority: TC_PRIORITY });
  const before = await a.attachedHooks();
  t.equal(before.length, 3);
  a.close();
  const b = await EbpfPrograms.open(root, cfg, { netns: ns.path, reload: true });
  t.teardown(() => b.close());
  const after = await b.attachedHooks();
  t.same(after.map((h) => `${h.ifname}/${h.direction}/${h.program}`).sort(), ['azv2/egress/to_pod', 'azv2/ingress/from_pod', 'eth0/egress/to_nic', 'eth0/ingress/from_nic'], 'the old pod veth got to_pod too');
  t.ok(after.every((h) => h.program !== null), 'every hook runs one of the new programs');
  const podIn = (hs: typeof after) => hs.find((h) => h.ifname === 'azv2' && h.direction === 'ingress')!.progId;
  t.not(podIn(after), podIn(before), 'program replaced');
  t.equal((await b.listEndpoints()).length, 1, 'maps were reused');
  await b.unloadAll();
  t.notOk(fs.existsSync(root), 'pins gone');
  t.notMatch(await ns.exec('tc', 'filter', 'show', 'dev', 'azv2', 'ingress'), /from_pod/);
  t.notMatch(await ns.exec('tc', 'qdisc', 'show', 'dev', 'eth0'), /clsact/);
});

t.test('probeKernel finds what the ebpf mode needs, and names what is missing', { skip }, async (t) => {
  const report = await probeKernel();
  t.match(report.libbpf, /^v?1\./);
  const err = await probeKernel({ bpffs: '/proc', objectDir: '/nonexistent' }).then(
    () => null,
    (e: Error) => e,
  );
  t.type(err, DataplaneUnavailableError);
  t.match(err!.message, /bpffs at \/proc/);
  t.match(err!.message, /nonexistent\/vnet\.bpf\.o/);
});
