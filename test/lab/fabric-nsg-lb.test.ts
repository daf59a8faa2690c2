// NSG rules (priority, scope, protocol/port) enforced by the fabric, and the
// load balancer: connections spread over healthy backends; a backend whose
// probe (from 168.63.129.16) fails is taken out and comes back when it recovers.
import t from 'tap';
import { labForTest, stopOnTeardown } from '../../lab/testing.js';
import { defaultSpec, type NsgRule } from '../../lab/spec.js';
import { plainAttach } from '../../lab/attach-plain.js';
import { startWhoami, tcpWhoami, tcpWhoamiDetail, type WhoamiServer } from '../../lab/tools/net.js';

t.test('NSG and load balancer', async (t) => {
  const lab = await labForTest(t, defaultSpec(3, 2));
  const vm1 = lab.vmInfo('vm1');
  const vm2 = lab.vmInfo('vm2');
  const vm3 = lab.vmInfo('vm3');
  stopOnTeardown(t, await startWhoami(vm2.netns, 8080, { name: 'vm2-8080' }));
  stopOnTeardown(t, await startWhoami(vm2.netns, 8081, { name: 'vm2-8081' }));

  await t.test('an NSG deny rule blocks and its removal restores', async (t) => {
    t.equal(await tcpWhoami(vm1.netns, vm2.primaryIp, 8080), vm1.primaryIp, 'open before');
    const deny: NsgRule = { priority: 200, direction: 'in', action: 'deny', protocol: 'tcp', src: '*', dst: vm2.primaryIp, dstPort: 8080, appliesTo: { vm: 'vm2' }, name: 'deny-8080' };
    await lab.setNsg([deny]);
    await t.rejects(tcpWhoami(vm1.netns, vm2.primaryIp, 8080, { timeoutMs: 1500 }), 'port 8080 denied');
    t.equal(await tcpWhoami(vm1.netns, vm2.primaryIp, 8081), vm1.primaryIp, 'port 8081 still open');
    await lab.setNsg([]);
    t.equal(await tcpWhoami(vm1.netns, vm2.primaryIp, 8080), vm1.primaryIp, 'open again');
  });

  await t.test('lower priority numbers win; subnet and NIC scopes both apply', async (t) => {
    t.teardown(() => lab.setNsg([]));
    const deny: NsgRule = { priority: 200, direction: 'in', action: 'deny', protocol: '*', src: '*', dst: '*', appliesTo: { vm: 'vm2' } };
    const allowVm1: NsgRule = { priority: 100, direction: 'in', action: 'allow', protocol: 'tcp', src: `${vm1.primaryIp}/32`, dst: '*', dstPort: [8000, 8100], appliesTo: { vm: 'vm2' } };
    await lab.setNsg([deny, allowVm1]);
    t.equal(await tcpWhoami(vm1.netns, vm2.primaryIp, 8080), vm1.primaryIp, 'vm1 allowed by the higher-priority rule');
    await t.rejects(tcpWhoami(vm3.netns, vm2.primaryIp, 8080, { timeoutMs: 1500 }), 'vm3 denied');
    // An outbound subnet rule denies vm1 even though the NIC rule allows it inbound.
    await lab.setNsg([deny, allowVm1, { priority: 300, direction: 'out', action: 'deny', protocol: 'tcp', src: `${vm1.primaryIp}/32`, dst: '*', appliesTo: 'subnet' }]);
    await t.rejects(tcpWhoami(vm1.netns, vm2.primaryIp, 8080, { timeoutMs: 1500 }), 'the subnet scope denies vm1 outbound');
  });

  // Backends: one pod on vm1, one on vm2. The client is vm3.
  const pod1 = await plainAttach(lab, 'vm1', 'be1');
  const pod2 = await plainAttach(lab, 'vm2', 'be2');
  stopOnTeardown(t, await startWhoami(pod1.netns, 8080, { name: 'be1' }));
  let be2: WhoamiServer = stopOnTeardown(t, await startWhoami(pod2.netns, 8080, { name: 'be2' }));
  const frontend = '10.240.255.10';
  const hits = async (n: number): Promise<string[]> => {
    const names: string[] = [];
    for (let i = 0; i < n; i++) names.push((await tcpWhoamiDetail(vm3.netns, frontend, 80)).name);
    return names;
  };

  await t.test('the LB spreads connections over its backends, probed from 168.63.129.16', async (t) => {
    await lab.setLoadBalancer({ name: 'web', frontend, port: 80, backends: [pod1.ip, pod2.ip], backendPort: 8080 });
    await lab.waitForLbBackends('web', [pod1.ip, pod2.ip]);
    const seen = await hits(8);
    t.equal(seen.filter((n) => n === 'be1').length, 4, 'half to be1');
    t.equal(seen.filter((n) => n === 'be2').length, 4, 'half to be2');
    t.ok(be2.clients.includes('168.63.129.16'), 'the probe came from 168.63.129.16');
    const answer = await tcpWhoamiDetail(vm3.netns, frontend, 80);
    t.equal(answer.client, vm3.primaryIp, 'the backend sees the real client');
  });

  await t.test('a backend whose probe fails is skipped, and restored when it recovers', async (t) => {
    await be2.stop();
    await lab.waitForLbBackends('web', [pod1.ip]);
    t.same(await hits(4), ['be1', 'be1', 'be1', 'be1'], 'only be1 while be2 is down');
    be2 = stopOnTeardown(t, await startWhoami(pod2.netns, 8080, { name: 'be2' }));
    await lab.waitForLbBackends('web', [pod1.ip, pod2.ip]);
    t.ok((await hits(4)).includes('be2'), 'be2 is back');
  });

  await t.test('no healthy backend: the frontend drops; removing the LB removes the frontend', async (t) => {
    await lab.setLoadBalancer({ name: 'web', frontend, port: 80, backends: ['10.240.9.9'], backendPort: 8080 });
    await lab.waitForLbBackends('web', []);
    await t.rejects(tcpWhoami(vm3.netns, frontend, 80, { timeoutMs: 1500 }));
    await lab.removeLoadBalancer('web');
    t.same(await lab.lbStatus(), []);
    const rules = await lab.execNs(lab.fabricNs, ['nft', 'list', 'chain', 'ip', 'vnet', 'loadbal']);
    t.notMatch(rules.stdout, /10\.240\.255\.10/);
  });
});
