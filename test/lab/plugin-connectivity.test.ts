// The plugin in the lab, driven through libcni exactly as kubelet would,
// with the seed conflist from the original plugin. Every assertion is a real
// packet. Runs once per dataplane mode.
import t from 'tap';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { startWhoami, tcpWhoami, tcpWhoamiDetail, ping, httpGet, type ToolServer } from '../../lab/tools/net.js';
import { MODES, VmCni, azureConflist } from './helpers/cni-harness.js';

const PORT = 8080;

for (const mode of MODES) {
  t.test(`connectivity in ${mode} mode`, async (t) => {
    const lab = await Lab.up(defaultSpec(2, 8));
    t.teardown(() => lab.down());
    const servers: ToolServer[] = [];
    t.teardown(async () => {
      for (const s of servers) await s.stop();
    });
    const vm1 = lab.vmInfo('vm1');
    const vm2 = lab.vmInfo('vm2');
    const cni1 = new VmCni(lab, 'vm1', azureConflist({ dataplane: mode, extra: { vnetCidrs: ['172.16.1.0/24'] } }));
    const cni2 = new VmCni(lab, 'vm2', azureConflist({ dataplane: mode, extra: { vnetCidrs: ['172.16.1.0/24'] } }));

    const a = await cni1.addPod('a');
    const b = await cni1.addPod('b');
    const c = await cni2.addPod('c');

    t.ok(vm1.secondaryIps.includes(a.ip) && vm1.secondaryIps.includes(b.ip), 'vm1 pods got vm1 secondary IPs');
    t.ok(vm2.secondaryIps.includes(c.ip), 'vm2 pod got a vm2 secondary IP');
    t.not(a.ip, b.ip, 'distinct IPs');

    for (const [p, name] of [[a, 'a'], [b, 'b'], [c, 'c']] as const) servers.push(await startWhoami(p.netns, PORT, { name }));
    servers.push(await startWhoami(vm1.netns, PORT, { name: 'vm1' }));
    servers.push(await startWhoami(vm2.netns, PORT, { name: 'vm2' }));
    servers.push(await startWhoami(lab.internetNs, PORT, { name: 'internet' }));
    servers.push(await startWhoami(lab.onpremNs, PORT, { name: 'onprem' }));
    servers.push(await startWhoami(lab.wireserverNs, PORT, { name: 'wire' }));

    t.test('pod to pod on the same VM', async (t) => {
      t.ok(await ping(a.netns, b.ip), 'ping a -> b');
      t.equal(await tcpWhoami(a.netns, b.ip, PORT), a.ip, 'b sees a by its pod IP');
    });
    t.test('pod to pod across VMs', async (t) => {
      t.ok(await ping(a.netns, c.ip), 'ping a -> c');
      t.equal(await tcpWhoami(a.netns, c.ip, PORT), a.ip, 'c sees a by its pod IP (no NAT inside the VNet)');
      t.equal(await tcpWhoami(c.netns, a.ip, PORT), c.ip, 'a sees c by its pod IP');
    });
    t.test('pod and VMs', async (t) => {
      t.equal(await tcpWhoami(a.netns, vm1.primaryIp, PORT), a.ip, 'pod -> its own VM');
      t.equal(await tcpWhoami(a.netns, vm2.primaryIp, PORT), a.ip, 'pod -> the other VM');
      t.equal(await tcpWhoami(vm1.netns, a.ip, PORT), vm1.primaryIp, 'its VM -> pod');
      t.equal(await tcpWhoami(vm2.netns, a.ip, PORT), vm2.primaryIp, 'other VM -> pod');
    });
    t.test('on-prem both ways without NAT', async (t) => {
      t.equal(await tcpWhoami(a.netns, lab.onpremIp, PORT), a.ip, 'on-prem sees the pod IP');
      t.equal(await tcpWhoami(lab.onpremNs, a.ip, PORT), lab.onpremIp, 'pod sees the on-prem IP');
    });
    t.test('internet through SNAT to the primary IP', async (t) => {
      t.equal(await tcpWhoami(a.netns, lab.internetIp, PORT), vm1.publicIp, 'internet host sees the VM public IP');
      t.equal(await tcpWhoami(c.netns, lab.internetIp, PORT), vm2.publicIp, 'from vm2 too');
      t.ok(await ping(a.netns, lab.internetIp), 'ICMP echo through SNAT');
    });
    t.test('wireserver keeps the pod IP', async (t) => {
      t.equal(await tcpWhoami(a.netns, '168.63.129.16', PORT), a.ip, '168.63.129.16 sees the pod IP, not SNATed');
      const res = await httpGet(a.netns, 'http://168.63.129.16/machine/plugins?comp=nmagent&type=getinterfaceinfov1');
      t.equal(res.status, 200);
      t.match(res.body, `<IPAddress Address="${a.ip}" IsPrimary="false"/>`, 'the wireserver identifies the pod as vm1');
    });
    t.test('internet -> pod through a public IP, replies not masqueraded', async (t) => {
      const pub = '198.51.100.77';
      await lab.setPublicIp('vm1', a.ip, pub);
      const seen = await tcpWhoamiDetail(lab.internetNs, pub, PORT);
      t.equal(seen.name, 'a', 'reached pod a');
      t.equal(seen.client, lab.internetIp, 'the pod sees the internet client');
      await lab.setPublicIp('vm1', a.ip, null);
    });
    t.test('an NSG rule on a pod IP takes effect', async (t) => {
      await lab.setNsg([{ priority: 100, direction: 'in', action: 'deny', protocol: 'tcp', src: '*', dst: c.ip, dstPort: PORT, appliesTo: 'subnet', name: 'deny-c' }]);
      await t.rejects(tcpWhoami(a.netns, c.ip, PORT, { timeoutMs: 1500 }), 'denied');
      await lab.setNsg([]);
      t.equal(await tcpWhoami(a.netns, c.ip, PORT), a.ip, 'allowed again');
    });
    t.test('a load balancer frontend reaches pod backends', async (t) => {
      await lab.setLoadBalancer({ name: 'web', frontend: '10.240.255.100', port: 80, backends: [b.ip, c.ip], backendPort: PORT });
      await lab.waitForLbBackends('web', [b.ip, c.ip]);
      const names = new Set<string>();
      for (let i = 0; i < 30 && names.size < 2; i++) names.add((await tcpWhoamiDetail(lab.onpremNs, '10.240.255.100', 80)).name);
      t.same([...names].sort(), ['b', 'c'], 'both pod backends served the frontend');
      await lab.removeLoadBalancer('web');
    });
    t.test('hostPort through chained portmap', async (t) => {
      const portMappings = [{ hostPort: 18080, containerPort: PORT, protocol: 'tcp' }];
      const d = await cni1.addPod('d', { capabilityArgs: { portMappings } });
      servers.push(await startWhoami(d.netns, PORT, { name: 'd' }));
      const seen = await tcpWhoamiDetail(vm2.netns, vm1.primaryIp, 18080);
      t.equal(seen.name, 'd', 'vm1:18080 reaches pod d');
      await cni1.del(d, { portMappings });
      await t.rejects(tcpWhoamiDetail(vm2.netns, vm1.primaryIp, 18080, { timeoutMs: 1500 }), 'hostPort gone after DEL');
    });
    t.test('kube-proxy style ClusterIP DNAT to pods on the same and another VM', async (t) => {
      const rules = [
        '*nat', ':KUBE-SERVICES - [0:0]', '-A PREROUTING -j KUBE-SERVICES', '-A OUTPUT -j KUBE-SERVICES',
        `-A KUBE-SERVICES -d 10.0.0.10/32 -p tcp --dport 80 -j DNAT --to-destination ${c.ip}:${PORT}`,
        `-A KUBE-SERVICES -d 10.0.0.11/32 -p tcp --dport 80 -j DNAT --to-destination ${b.ip}:${PORT}`,
        'COMMIT', '',
      ].join('\n');
      const res = await lab.execVm('vm1', ['iptables-restore', '--noflush'], { input: rules });
      t.equal(res.code, 0, `kube-proxy rules installed: ${res.stderr}`);
      const remote = await tcpWhoamiDetail(a.netns, '10.0.0.10', 80);
      t.equal(remote.name, 'c', 'ClusterIP -> pod on the other VM');
      t.equal(remote.client, a.ip, 'backend sees the client pod');
      const local = await tcpWhoamiDetail(a.netns, '10.0.0.11', 80);
      t.equal(local.name, 'b', 'ClusterIP -> pod on the same VM (replies came back from the ClusterIP, or the connection would fail)');
    });
    t.test('DEL removes the pod and frees its IP', async (t) => {
      await cni1.del(b);
      t.notOk(await ping(a.netns, b.ip, { timeoutSec: 1 }), 'b unreachable after DEL');
      const again = await cni1.addPod('e');
      t.ok(vm1.secondaryIps.includes(again.ip), 'a new pod still gets a pool IP');
      const st = cni1.state();
      t.equal(Object.keys(st.endpoints).length, 2, 'state holds exactly the live endpoints (a, e)');
    });
  });
}
