// ARP answered by the fabric MAC, delivery to the NIC's MAC, and
// anti-spoofing: frames with a foreign source MAC or source IP (ARP included)
// never reach the other side, while the unspoofed ones do. "Never reached" is
// judged at the receiver: a good datagram sent *after* the spoofed one
// arrives, the spoofed one does not.
import t from 'tap';
import { labForTest, stopOnTeardown } from '../../lab/testing.js';
import { FABRIC_MAC, defaultSpec } from '../../lab/spec.js';
import { ping, startUdpSink, udpSend } from '../../lab/tools/net.js';

async function neighbour(lab: Awaited<ReturnType<typeof labForTest>>, netns: string, ip: string): Promise<string> {
  return (await lab.execNs(netns, ['ip', 'neigh', 'show', ip, 'dev', 'eth0'])).stdout.trim();
}

t.test('fabric ARP and anti-spoofing', async (t) => {
  const lab = await labForTest(t, defaultSpec(2, 2));
  const vm1 = lab.vmNetns('vm1');
  const vm2 = lab.vmNetns('vm2');
  const vm2ip = lab.vmInfo('vm2').primaryIp;

  await t.test('ARP for VNet addresses is answered with the fabric MAC', async (t) => {
    t.ok(await ping(vm1, vm2ip), 'vm1 reaches vm2');
    t.match(await neighbour(lab, vm1, vm2ip), new RegExp(`lladdr ${FABRIC_MAC}`), 'another VM: fabric MAC');
    t.notOk(await ping(vm1, '10.240.99.99', { timeoutSec: 1 }), 'an address on no NIC is not delivered');
    t.match(await neighbour(lab, vm1, '10.240.99.99'), new RegExp(`lladdr ${FABRIC_MAC}`), 'but its ARP is answered');
    await ping(vm1, lab.gateway); // the fabric has no address there: only ARP is answered
    t.match(await neighbour(lab, vm1, lab.gateway), new RegExp(`lladdr ${FABRIC_MAC}`), 'the gateway too');
  });

  await t.test("ARP for the asker's own IPs is not answered", async (t) => {
    t.notOk(await ping(vm1, '10.240.1.4', { timeoutSec: 1 }), "vm1's own secondary");
    t.notMatch(await neighbour(lab, vm1, '10.240.1.4'), /lladdr/);
  });

  await t.test('delivered frames carry the NIC MAC as destination and the fabric MAC as source', async (t) => {
    const fabric = await lab.execNs(lab.fabricNs, ['ip', 'neigh', 'show', vm2ip]);
    t.match(fabric.stdout, new RegExp(`lladdr ${lab.vmInfo('vm2').mac} PERMANENT`));
    const link = await lab.execNs(lab.fabricNs, ['ip', '-o', 'link', 'show', 'to-vm2']);
    t.match(link.stdout, new RegExp(`link/ether ${FABRIC_MAC}`));
    // A secondary IP on no interface of vm2 still reaches vm2's NIC (and is dropped there as not local):
    const route = await lab.execNs(lab.fabricNs, ['ip', 'route', 'get', '10.240.2.4']);
    t.match(route.stdout, new RegExp(`via ${vm2ip} dev to-vm2`));
  });

  const sink = stopOnTeardown(t, await startUdpSink(vm2, 9000));

  await t.test('a spoofed source MAC is dropped', async (t) => {
    const realMac = lab.vmInfo('vm1').mac;
    t.equal((await lab.execNs(vm1, ['ip', 'link', 'set', 'eth0', 'address', '02:00:00:00:00:99'])).code, 0);
    t.teardown(() => lab.execNs(vm1, ['ip', 'link', 'set', 'eth0', 'address', realMac]));
    // The MAC change flushed vm1's neighbours; a static entry lets the IP frame leave without ARP,
    // so only the frame's source MAC can stop it.
    t.equal((await lab.execNs(vm1, ['ip', 'neigh', 'replace', vm2ip, 'lladdr', FABRIC_MAC, 'dev', 'eth0', 'nud', 'permanent'])).code, 0);
    await udpSend(vm1, vm2ip, 9000, 'spoofed-mac');
    await lab.execNs(vm1, ['ip', 'neigh', 'del', vm2ip, 'dev', 'eth0']);
    // And an ARP request from the spoofed MAC is not answered either.
    t.notOk(await ping(vm1, '10.240.2.4', { timeoutSec: 1 }), 'no ARP answer to a spoofed MAC');
    t.notMatch(await neighbour(lab, vm1, '10.240.2.4'), /lladdr/);
    t.equal((await lab.execNs(vm1, ['ip', 'link', 'set', 'eth0', 'address', realMac])).code, 0);
    await udpSend(vm1, vm2ip, 9000, 'real-mac');
    const good = await sink.waitFor('real-mac');
    t.equal(good.from, lab.vmInfo('vm1').primaryIp);
    t.notOk(sink.received.some((d) => d.payload === 'spoofed-mac'), 'the spoofed frame never arrived');
  });

  await t.test('a spoofed source IP is dropped; a configured secondary passes', async (t) => {
    // The kernel only sends from local addresses: configure them on vm1's eth0 (/32, no route change).
    for (const ip of ['10.240.0.77', '10.240.2.4', '10.240.1.5']) {
      t.equal((await lab.execNs(vm1, ['ip', 'addr', 'add', `${ip}/32`, 'dev', 'eth0'])).code, 0);
      t.teardown(() => lab.execNs(vm1, ['ip', 'addr', 'del', `${ip}/32`, 'dev', 'eth0']));
    }
    await udpSend(vm1, vm2ip, 9000, 'unassigned-ip', { source: '10.240.0.77' });
    await udpSend(vm1, vm2ip, 9000, 'other-nics-ip', { source: '10.240.2.4' });
    await udpSend(vm1, vm2ip, 9000, 'own-secondary', { source: '10.240.1.5' });
    await udpSend(vm1, vm2ip, 9000, 'primary');
    t.equal((await sink.waitFor('own-secondary')).from, '10.240.1.5', "vm1's own secondary passes");
    t.equal((await sink.waitFor('primary')).from, '10.240.0.4');
    t.notOk(sink.received.some((d) => d.payload === 'unassigned-ip'), 'an address on no NIC is dropped');
    t.notOk(sink.received.some((d) => d.payload === 'other-nics-ip'), "another NIC's address is dropped");
  });

  await t.test('ARP with a spoofed sender IP is dropped (not answered)', async (t) => {
    // With 10.240.0.78 configured locally, vm1's ARP request for a new target carries it as sender IP.
    t.equal((await lab.execNs(vm1, ['ip', 'addr', 'add', '10.240.0.78/32', 'dev', 'eth0'])).code, 0);
    t.teardown(() => lab.execNs(vm1, ['ip', 'addr', 'del', '10.240.0.78/32', 'dev', 'eth0']));
    t.notOk(await ping(vm1, '10.240.2.5', { source: '10.240.0.78', timeoutSec: 1 }));
    t.notMatch(await neighbour(lab, vm1, '10.240.2.5'), /lladdr/, 'no answer for a spoofed sender');
    t.ok(await ping(vm1, lab.vmInfo('vm2').primaryIp), 'the primary still resolves and reaches vm2');
    const counters = await lab.execNs(lab.fabricNs, ['nft', 'list', 'chain', 'netdev', 'guard', 'guard']);
    t.match(counters.stdout, /packets [1-9]\d* bytes \d+ drop comment "ARP sender IP is not configured on the NIC"/, 'the guard counted it');
  });
});
