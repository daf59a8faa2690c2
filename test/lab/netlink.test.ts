// The rtnetlink layer (native/src/netlink.cc via control/netlink/ip.ts) in a
// lab VM and a pod netns: what it creates is what iproute2 and ping see, the
// kernel's refusals come back as typed errors naming the op, a failed request
// leaves nothing behind, and worker threads never stay in a foreign netns.
// Every op names the VM's netns explicitly: this test process runs in the
// machine's netns, which must not change.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { run } from '../../control/exec.js';
import { labForTest } from '../../lab/testing.js';
import { defaultSpec } from '../../lab/spec.js';
import { netlink, linkInfo, ipv4Addrs, ipv4Routes, isNetlinkError, NetlinkError } from '../../control/netlink/ip.js';
import { DataplaneError } from '../../control/errors.js';

const nsRun = (netns: string, argv: string[]) => run(['nsenter', `--net=${netns}`, '--', ...argv], { timeoutMs: 30_000 });
async function linkNames(netns: string): Promise<string[]> {
  const r = await nsRun(netns, ['ip', '-j', 'link', 'show']);
  return (JSON.parse(r.stdout) as { ifname: string }[]).map((l) => l.ifname).sort();
}

t.test('netlink layer', async (t) => {
  const lab = await labForTest(t, defaultSpec(1, 1));
  const vmNs = lab.vmInfo('vm1').netnsPath;
  const pod = await lab.addPodNetns('vm1', 'p0');
  const host = 'azvnltest0001';
  const vmLinksBefore = await linkNames(vmNs);

  await t.test('veth with the peer created in the pod netns, configured on both sides, pings', async (t) => {
    await netlink(
      [
        { op: 'linkAdd', kind: 'veth', name: host, mtu: 1400, mac: '02:aa:00:00:00:01', peer: { name: 'eth0', mtu: 1400, mac: '02:aa:00:00:00:02', netns: pod } },
        { op: 'addrAdd', dev: host, address: '10.250.0.1', prefixLength: 32, replace: true },
        { op: 'linkSet', dev: host, up: true },
        { op: 'routeAdd', address: '10.250.0.2', dstLen: 32, dev: host, replace: true },
      ],
      vmNs,
    );
    await netlink(
      [
        { op: 'linkSet', dev: 'lo', up: true },
        { op: 'addrAdd', dev: 'eth0', address: '10.250.0.2', prefixLength: 24, replace: true },
        { op: 'linkSet', dev: 'eth0', up: true },
        { op: 'routeAdd', default: true, gateway: '10.250.0.1', dev: 'eth0', onlink: true, replace: true },
        { op: 'sysctl', key: 'net/ipv4/conf/eth0/accept_local', value: '1' },
      ],
      pod,
    );
    const seen = (JSON.parse((await nsRun(vmNs, ['ip', '-j', '-d', 'link', 'show', 'dev', host])).stdout) as unknown[])[0];
    t.match(seen, { ifname: host, mtu: 1400, address: '02:aa:00:00:00:01', linkinfo: { info_kind: 'veth' } }, 'iproute2 sees the host end');
    const inPod = (JSON.parse((await nsRun(pod, ['ip', '-j', 'addr', 'show', 'dev', 'eth0'])).stdout) as unknown[])[0];
    t.match(inPod, { ifname: 'eth0', mtu: 1400, address: '02:aa:00:00:00:02', addr_info: [{ local: '10.250.0.2', prefixlen: 24 }] }, 'and the pod end, in the pod');
    t.match((await nsRun(pod, ['ip', 'route', 'show', 'default'])).stdout, /default via 10\.250\.0\.1 dev eth0 .*onlink/);
    t.equal((await nsRun(pod, ['cat', '/proc/sys/net/ipv4/conf/eth0/accept_local'])).stdout.trim(), '1', 'sysctl written in the pod netns');
    const ping = await nsRun(pod, ['ping', '-c', '1', '-W', '2', '10.250.0.1']);
    t.equal(ping.code, 0, `pod pings its gateway: ${ping.stderr}`);

    const link = await linkInfo(host, vmNs);
    t.match(link, { ifname: host, mtu: 1400, address: '02:aa:00:00:00:01', operstate: 'UP', linkinfo: { info_kind: 'veth' } }, 'linkGet reads it back');
    t.ok(link?.flags.includes('UP'));
    t.same((await ipv4Addrs('eth0', pod)).map((a) => `${a.local}/${a.prefixlen}`), ['10.250.0.2/24']);
    t.match(await ipv4Routes({ default: true }, pod), [{ dst: 'default', gateway: '10.250.0.1', dev: 'eth0', flags: ['onlink'] }]);
    t.match(await ipv4Routes({ dev: host }, vmNs), [{ dst: '10.250.0.2/32', dev: host, scope: 'link' }]);
    t.equal(await linkInfo('no-such-link', vmNs), undefined, 'an absent link is undefined, not an error');
  });

  await t.test('kernel refusals are typed errors and leave nothing behind', async (t) => {
    const dup = await netlink([{ op: 'linkAdd', kind: 'veth', name: host, peer: { name: 'x0', netns: pod } }], vmNs).catch((e: unknown) => e);
    t.ok(dup instanceof NetlinkError && dup instanceof DataplaneError, 'a NetlinkError is a DataplaneError');
    t.match(dup, { sysCode: 'EEXIST', errno: 17, op: 'linkAdd', code: 'EDATAPLANEOP' });
    const peerTaken = await netlink([{ op: 'linkAdd', kind: 'veth', name: 'azvnltest0002', peer: { name: 'eth0', netns: pod } }], vmNs).catch((e: unknown) => e);
    t.ok(isNetlinkError(peerTaken, 'EEXIST'), 'peer name taken in the pod netns: EEXIST');
    t.equal(await linkInfo('azvnltest0002', vmNs), undefined, 'no host end left over');
    t.same(await linkNames(pod), ['eth0', 'lo'], 'pod netns unchanged');

    const ghost = await netlink([{ op: 'linkGet', dev: 'lo' }, { op: 'linkSet', dev: 'ghost0', up: true }], vmNs).catch((e: unknown) => e);
    t.match(ghost, { sysCode: 'ENODEV', op: 'linkSet', message: /ghost0/ });
    t.equal((ghost as NetlinkError & { cause: { index: number } }).cause.index, 1, 'the failing op is named by index');
    t.ok(isNetlinkError(await netlink([{ op: 'addrAdd', dev: host, address: '10.250.0.1', prefixLength: 32 }], vmNs).catch((e: unknown) => e), 'EEXIST'), 'address exists');
    t.ok(isNetlinkError(await netlink([{ op: 'routeAdd', default: true, gateway: '10.99.9.1' }], pod).catch((e: unknown) => e), 'ENETUNREACH'), 'unreachable gateway');
    t.ok(isNetlinkError(await netlink([{ op: 'linkGet', dev: 'lo' }], '/var/run/netns/vnet-no-such-netns').catch((e: unknown) => e), 'ENOENT'), 'missing netns');
    t.ok(isNetlinkError(await netlink([{ op: 'sysctl', key: 'net/ipv4/conf/ghost0/forwarding', value: '1' }], vmNs).catch((e: unknown) => e), 'ENOENT'), 'sysctl of a missing link');
  });

  await t.test('delete: the pod end goes with the host end; a missing link is fine with missingOk', async (t) => {
    t.same(await netlink([{ op: 'linkDel', dev: host, missingOk: true }, { op: 'linkDel', dev: host, missingOk: true }], vmNs), [true, false]);
    t.same(await linkNames(pod), ['lo'], 'pod end gone');
    t.same(await linkNames(vmNs), vmLinksBefore, 'VM links as before');
    t.ok(isNetlinkError(await netlink([{ op: 'linkDel', dev: host }], vmNs).catch((e: unknown) => e), 'ENODEV'));
  });

  await t.test('worker threads come back to their own netns', async (t) => {
    const own = readFileSync('/proc/net/dev', 'utf8'); // this process's netns, read-only
    await Promise.all(Array.from({ length: 16 }, (_, i) => netlink([{ op: 'linkList' }, { op: 'sysctl', key: 'net/ipv4/conf/lo/forwarding', value: '0' }], i % 2 ? pod : vmNs)));
    const [links] = (await netlink([{ op: 'linkList' }])) as [{ ifname: string }[]];
    const names = links.map((l) => l.ifname).sort();
    const ownNames = own.split('\n').slice(2).map((l) => l.split(':')[0]!.trim()).filter(Boolean).sort();
    t.same(names, ownNames, 'a call without netns sees the caller netns, not a VM or pod');
  });
});
