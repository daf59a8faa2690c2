// Internet egress (primary IPs only, SNAT to the VM's public IP), on-prem
// peering without NAT (both ways, VM and pod addresses), and a public IP 1:1
// on a secondary (pod) address with replies translated back.
import t from 'tap';
import { labForTest, stopOnTeardown } from '../../lab/testing.js';
import { defaultSpec } from '../../lab/spec.js';
import { plainAttach } from '../../lab/attach-plain.js';
import { startUdpSink, startWhoami, tcpWhoami, tcpWhoamiDetail, udpSend } from '../../lab/tools/net.js';

t.test('fabric NAT and peering', async (t) => {
  const lab = await labForTest(t, defaultSpec(2, 3));
  const vm1 = lab.vmInfo('vm1');
  const vm2 = lab.vmInfo('vm2');
  stopOnTeardown(t, await startWhoami(lab.internetNs, 8080, { name: 'internet' }));
  stopOnTeardown(t, await startWhoami(lab.onpremNs, 8080, { name: 'onprem' }));

  await t.test('a primary IP reaches the internet host as the VM public IP', async (t) => {
    t.equal(await tcpWhoami(vm1.netns, lab.internetIp, 8080), vm1.publicIp);
    t.equal(await tcpWhoami(vm2.netns, lab.internetIp, 8080), vm2.publicIp);
  });

  await t.test('a secondary IP does not reach the internet host', async (t) => {
    const secondary = vm1.secondaryIps[0]!;
    t.equal((await lab.execNs(vm1.netns, ['ip', 'addr', 'add', `${secondary}/32`, 'dev', 'eth0'])).code, 0);
    t.teardown(() => lab.execNs(vm1.netns, ['ip', 'addr', 'del', `${secondary}/32`, 'dev', 'eth0']));
    await t.rejects(tcpWhoami(vm1.netns, lab.internetIp, 8080, { source: secondary, timeoutMs: 1500 }), 'tcp from the secondary fails');
    const sink = stopOnTeardown(t, await startUdpSink(lab.internetNs, 9000));
    await udpSend(vm1.netns, lab.internetIp, 9000, 'from-secondary', { source: secondary });
    await udpSend(vm1.netns, lab.internetIp, 9000, 'from-primary');
    t.equal((await sink.waitFor('from-primary')).from, vm1.publicIp, 'the primary arrives, translated');
    t.same(sink.received.map((d) => d.payload), ['from-primary'], 'the secondary never arrived');
  });

  await t.test('a VM without a public IP has no internet egress', async (t) => {
    await lab.setPublicIp('vm2', vm2.primaryIp, null);
    t.teardown(() => lab.setPublicIp('vm2', vm2.primaryIp, vm2.publicIp!));
    await t.rejects(tcpWhoami(vm2.netns, lab.internetIp, 8080, { timeoutMs: 1500 }));
  });

  await t.test('the internet cannot reach private addresses', async (t) => {
    stopOnTeardown(t, await startWhoami(vm1.netns, 8081, { name: 'vm1' }));
    await t.rejects(tcpWhoami(lab.internetNs, vm1.primaryIp, 8081, { timeoutMs: 1500 }), 'not the private IP');
    t.equal(await tcpWhoami(lab.internetNs, vm1.publicIp!, 8081), lab.internetIp, 'the VM public IP maps 1:1 to the primary');
  });

  await t.test('on-prem <-> VM without NAT, both ways', async (t) => {
    t.equal(await tcpWhoami(vm1.netns, lab.onpremIp, 8080), vm1.primaryIp, 'on-prem sees the VM primary IP');
    stopOnTeardown(t, await startWhoami(vm2.netns, 8082, { name: 'vm2' }));
    t.equal(await tcpWhoami(lab.onpremNs, vm2.primaryIp, 8082), lab.onpremIp, 'the VM sees the on-prem IP');
  });

  const pod = await plainAttach(lab, 'vm1', 'web');
  const podServer = stopOnTeardown(t, await startWhoami(pod.netns, 8080, { name: 'pod' }));

  await t.test('on-prem <-> pod without NAT, both ways', async (t) => {
    t.equal(await tcpWhoami(pod.netns, lab.onpremIp, 8080), pod.ip, 'on-prem sees the pod IP');
    t.equal(await tcpWhoami(lab.onpremNs, pod.ip, 8080), lab.onpremIp, 'the pod sees the on-prem IP');
  });

  await t.test('public IP 1:1 to a secondary (pod) address', async (t) => {
    const pub = '198.51.100.200';
    await t.rejects(tcpWhoami(lab.internetNs, pub, 8080, { timeoutMs: 1500 }), 'nothing before the mapping');
    await lab.setPublicIp('vm1', pod.ip, pub);
    t.equal(lab.vmInfo('vm1').publicIps[pod.ip], pub);
    const answer = await tcpWhoamiDetail(lab.internetNs, pub, 8080);
    t.same(answer, { client: lab.internetIp, server: pod.ip, name: 'pod' }, 'the pod sees the real client, addressed to its private IP');
    t.ok(podServer.clients.includes(lab.internetIp));

    const echo = stopOnTeardown(t, await startUdpSink(pod.netns, 9001, { echo: true }));
    const reply = await udpSend(lab.internetNs, pub, 9001, 'hello', { awaitReply: true });
    t.equal(reply?.from, pub, 'the reply comes back from the public IP');
    t.equal(reply?.payload, 'hello');
    t.equal((await echo.waitFor('hello')).from, lab.internetIp);

    await lab.setPublicIp('vm1', pod.ip, null);
    await t.rejects(tcpWhoami(lab.internetNs, pub, 8080, { timeoutMs: 1500 }), 'gone with the mapping');
  });
});
