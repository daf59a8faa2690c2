// The plugin in the lab, driven through libcni exactly as kubelet would.
// Every assertion is a real packet. Runs once per dataplane, and inside each
// lab once per pod mode: first mode bridge (the seed conflist of the original
// plugin), then, after the node drained, mode transparent with upstream's
// current Linux conflist unchanged (test/fixtures/upstream-conflists/
// azure-linux.conflist, plus the dataplane key). Both have ipsToRouteViaHost
// 169.254.20.10, answered by a node-local DNS responder in each VM.
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { startWhoami, tcpWhoami, tcpWhoamiDetail, ping, httpGet, startDns, dnsQuery, type ToolServer } from '../../lab/tools/net.js';
import { MODES, NET_MODES, REPO, VmCni, azureConflist, CniRunFailed, vmSnapshot, type Mode, type NetMode, type PodHandle } from './helpers/cni-harness.js';

const PORT = 8080;
const NODE_LOCAL_DNS = '169.254.20.10';
const DNS_ANSWER = '10.9.8.7';

/** Upstream's shipped Linux conflist (mode transparent), with only our dataplane key and the lab's on-prem range added. */
function upstreamTransparent(dataplane: Mode): Record<string, unknown> {
  const list = JSON.parse(readFileSync(path.join(REPO, 'test', 'fixtures', 'upstream-conflists', 'azure-linux.conflist'), 'utf8')) as { plugins: Record<string, unknown>[] };
  Object.assign(list.plugins[0]!, { vnetCidrs: ['172.16.1.0/24'], ...(dataplane === 'ebpf' ? { dataplane } : {}) });
  return list;
}

function conflistFor(dataplane: Mode, netMode: NetMode): Record<string, unknown> {
  if (netMode === 'transparent') return upstreamTransparent(dataplane);
  return azureConflist({ dataplane, extra: { vnetCidrs: ['172.16.1.0/24'], ipsToRouteViaHost: [NODE_LOCAL_DNS] } });
}

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
    servers.push(await startWhoami(vm1.netns, PORT, { name: 'vm1' }));
    servers.push(await startWhoami(vm2.netns, PORT, { name: 'vm2' }));
    servers.push(await startWhoami(lab.internetNs, PORT, { name: 'internet' }));
    servers.push(await startWhoami(lab.onpremNs, PORT, { name: 'onprem' }));
    servers.push(await startWhoami(lab.wireserverNs, PORT, { name: 'wire' }));
    // Node-local DNS on the VM's link-local address (node-local-dns puts it on a dummy interface; this
    // kernel has no dummy driver, and lo holds a local address the same way).
    for (const vm of ['vm1', 'vm2']) {
      const res = await lab.execVm(vm, ['ip', 'addr', 'add', `${NODE_LOCAL_DNS}/32`, 'dev', 'lo']);
      t.equal(res.code, 0, `${vm}: node-local DNS address up: ${res.stderr}`);
      servers.push(await startDns(lab.vmInfo(vm).netns, NODE_LOCAL_DNS, DNS_ANSWER));
    }

    for (const netMode of NET_MODES) {
      t.test(`mode ${netMode}`, async (t) => {
        const cni1 = new VmCni(lab, 'vm1', conflistFor(mode, netMode));
        const cni2 = new VmCni(lab, 'vm2', conflistFor(mode, netMode));
        const podServers: ToolServer[] = [];
        const px = netMode === 'bridge' ? '' : 't'; // pod netns names stay unique across the two runs
        t.teardown(async () => {
          for (const s of podServers) await s.stop();
        });
        const a = await cni1.addPod(`${px}a`);
        const b = await cni1.addPod(`${px}b`);
        const c = await cni2.addPod(`${px}c`);

        t.ok(vm1.secondaryIps.includes(a.ip) && vm1.secondaryIps.includes(b.ip), 'vm1 pods got vm1 secondary IPs');
        t.ok(vm2.secondaryIps.includes(c.ip), 'vm2 pod got a vm2 secondary IP');
        t.not(a.ip, b.ip, 'distinct IPs');

        for (const [p, name] of [[a, 'a'], [b, 'b'], [c, 'c']] as const) podServers.push(await startWhoami(p.netns, PORT, { name }));

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
          const d = await cni1.addPod(`${px}d`, { capabilityArgs: { portMappings } });
          podServers.push(await startWhoami(d.netns, PORT, { name: 'd' }));
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
        t.test('the pod has the shape its mode asks for', async (t) => {
          await checkShape(t, lab, mode, netMode, a);
        });
        t.test('node-local DNS (ipsToRouteViaHost) answers pods over UDP and TCP', async (t) => {
          for (const p of [a, c]) {
            t.equal(await dnsQuery(p.netns, NODE_LOCAL_DNS), DNS_ANSWER, `${p.name}: UDP 53`);
            t.equal(await dnsQuery(p.netns, NODE_LOCAL_DNS, { tcp: true }), DNS_ANSWER, `${p.name}: TCP 53`);
          }
        });
        if (netMode === 'bridge' && NET_MODES.includes('transparent')) {
          t.test('an ADD in mode transparent while bridge-mode pods run', async (t) => {
            const other = new VmCni(lab, 'vm1', conflistFor(mode, 'transparent'), 'other-mode.conflist');
            if (mode === 'iptables') {
              const before = await vmSnapshot(lab, 'vm1');
              const err = await other.addPod(`${px}other`).then(() => undefined, (e: unknown) => e);
              t.type(err, CniRunFailed, 'refused');
              const doc = (err as CniRunFailed).cniError;
              t.equal(doc?.code, 101, `code 101 (${String(doc?.msg)})`);
              t.match(String(doc?.msg), /mode bridge .*mode transparent.*drain the node/, 'the message names both modes and what to do');
              t.same(await vmSnapshot(lab, 'vm1'), before, 'no link, rule or state changed');
            } else {
              // ebpf: one node state for both modes; only the pods differ.
              const p = await other.addPod(`${px}other`);
              t.ok(await ping(p.netns, a.ip, { timeoutSec: 5 }), 'a transparent pod next to bridge-mode pods reaches them');
              await other.del(p);
            }
          });
        }
        let e: PodHandle | undefined;
        t.test('DEL removes the pod and frees its IP', async (t) => {
          await cni1.del(b);
          t.notOk(await ping(a.netns, b.ip, { timeoutSec: 1 }), 'b unreachable after DEL');
          e = await cni1.addPod(`${px}e`);
          t.ok(vm1.secondaryIps.includes(e.ip), 'a new pod still gets a pool IP');
          t.equal(Object.keys(cni1.state().endpoints).length, 2, 'state holds exactly the live endpoints (a, e)');
        });
        t.test('DEL drains the node', async (t) => {
          for (const p of [a, b, e]) if (p) await cni1.del(p); // b again: DEL is idempotent
          await cni2.del(c);
          t.same(Object.keys(cni1.state().endpoints), [], 'vm1 has no endpoint left');
          const links = await lab.execVm('vm1', ['ip', '-o', 'link', 'show']);
          t.notMatch(links.stdout, /azure0/, 'no bridge left: the next mode starts from a clean node');
        });
      });
    }
  });
}

/** Routes, neighbours and host wiring of pod p, as `ip` shows them. */
async function checkShape(t: Test, lab: Lab, mode: Mode, netMode: NetMode, p: PodHandle): Promise<void> {
  const routes = (await lab.execNs(p.netns, ['ip', '-4', 'route', 'show'])).stdout;
  const nic = (await lab.execVm('vm1', ['ip', '-o', 'link', 'show', 'eth0'])).stdout;
  const hostRoutes = (await lab.execVm('vm1', ['ip', '-4', 'route', 'show', `${p.ip}/32`])).stdout;
  if (netMode === 'transparent') {
    t.match(routes, /^default via 169\.254\.1\.1 dev eth0/m, 'pod: default via 169.254.1.1');
    t.match(routes, /^169\.254\.1\.1 dev eth0 scope link/m, 'pod: 169.254.1.1 on the link');
    t.notMatch(routes, /10\.240\.0\.0\/16/, 'pod: no subnet route');
    const neigh = (await lab.execNs(p.netns, ['ip', 'neigh', 'show', '169.254.1.1'])).stdout;
    const hostMac = (p.result.interfaces as { name: string; mac: string; sandbox?: string }[]).find((i) => !i.sandbox)!.mac;
    t.match(neigh, new RegExp(`lladdr ${hostMac} PERMANENT`), 'pod: 169.254.1.1 is the host veth, statically');
    t.same((p.result.ips as { gateway: string }[])[0]!.gateway, '169.254.1.1', 'the result reports the gateway the pod uses');
  } else {
    t.match(routes, /^default via 10\.240\.0\.1 dev eth0/m, 'pod: default via the subnet gateway');
    t.match(routes, /^10\.240\.0\.0\/16 dev eth0/m, 'pod: the subnet is on the link');
  }
  const routed = mode === 'ebpf' || netMode === 'transparent';
  if (routed) {
    t.notMatch(nic, /master/, 'host: eth0 left alone');
    t.match(hostRoutes, new RegExp(`^${p.ip.replaceAll('.', '\\.')} dev azv`, 'm'), 'host: a /32 route to the pod via its veth');
  } else {
    t.match(nic, /master azure0/, 'host: eth0 is a port of azure0');
  }
}
