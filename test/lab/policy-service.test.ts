// NetworkPolicy against traffic kube-proxy NATs, the same test for both
// dataplanes (VNET_TEST_MODES). Inside vm1, kube-proxy style nat rules
// (iptables-restore, as kube-proxy installs them):
//   ClusterIP 10.0.0.11:80 -> b:80            DNAT only (a same-node client)
//   ClusterIP 10.0.0.12:80 -> c:80            b's own outbound through a service
//   NodePort  vm1:30080    -> b:80            DNAT + MASQUERADE (externalTrafficPolicy=Cluster)
//   NodePort  vm1:30081    -> c:80            DNAT + MASQUERADE to a backend on vm2
//   ip-masq-agent style MASQUERADE of pod traffic to outside the VNet
// b's ingress policy must judge the original client in every case, although
// the packets reach b with the node's address as source after MASQUERADE
// (the iptables dataplane filters in FORWARD, before SNAT; the ebpf one asks
// conntrack); a's egress policy likewise. The ClusterIP case is the
// regression test of the to_pod service-reply exception (commit ad08f74): it
// must not admit a client's new connection DNATed to the pod. The node
// itself still reaches b (kubelet probes), and b's own outbound connections,
// direct or through a ClusterIP, get their replies through its default-deny
// ingress.
import t from 'tap';
import path from 'node:path';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { startWhoami, tcpWhoamiDetail, type ToolServer } from '../../lab/tools/net.js';
import { run } from '../../control/exec.js';
import { MODES, REPO, VmCni, azureConflist, type PodHandle } from './helpers/cni-harness.js';
import type { CompiledRule, DirectionPolicy, EndpointPolicy } from '../../control/policy/types.js';

const DRIVER = path.join(REPO, 'dist', 'test', 'lab', 'helpers', 'netpol-driver.js');
const FAIL_MS = 2000; // a connection that must not happen: how long to give it (a pass never depends on this)
const OPEN: DirectionPolicy = { isolated: false, rules: [] };
const DENY: DirectionPolicy = { isolated: true, rules: [] };
const allowTcp80 = (...peers: string[]): DirectionPolicy => ({
  isolated: true,
  rules: [{ peers: peers.map((cidr) => ({ family: 'ipv4', cidr, except: [] })), ports: [{ protocol: 'TCP', port: 80, endPort: 80 }], sources: ['lab/policy-service'] } satisfies CompiledRule],
});
const VIP_B = '10.0.0.11';
const VIP_C = '10.0.0.12';
const NODEPORT_B = 30080;
const NODEPORT_C = 30081;

for (const mode of MODES) {
  t.test(`policy on kube-proxy NATed traffic, ${mode} dataplane`, async (t) => {
    const lab = await Lab.up(defaultSpec(2, 4));
    t.teardown(() => lab.down());
    const conflist = azureConflist({ cniVersion: '1.0.0', ...(mode === 'ebpf' ? { dataplane: 'ebpf' as const } : {}) });
    const cni = { vm1: new VmCni(lab, 'vm1', conflist), vm2: new VmCni(lab, 'vm2', conflist) };
    const a = await cni.vm1.addPod('a');
    const b = await cni.vm1.addPod('b');
    const c = await cni.vm2.addPod('c');
    const vm1 = lab.vmInfo('vm1');
    const servers: ToolServer[] = [];
    t.teardown(async () => {
      for (const s of servers) await s.stop();
    });
    for (const p of [a, b, c]) servers.push(await startWhoami(p.netns, 80, { name: p.name }));
    servers.push(await startWhoami(lab.internetNs, 80, { name: 'internet' }));

    const rules = [
      '*nat',
      ':KUBE-SERVICES - [0:0]', ':KUBE-NODEPORTS - [0:0]', ':KUBE-POSTROUTING - [0:0]', ':KUBE-MARK-MASQ - [0:0]', ':IP-MASQ-AGENT - [0:0]',
      '-A PREROUTING -j KUBE-SERVICES', '-A OUTPUT -j KUBE-SERVICES', '-A POSTROUTING -j KUBE-POSTROUTING', '-A POSTROUTING -j IP-MASQ-AGENT',
      '-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000',
      '-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN',
      '-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0',
      '-A KUBE-POSTROUTING -j MASQUERADE',
      `-A KUBE-SERVICES -d ${VIP_B}/32 -p tcp --dport 80 -j DNAT --to-destination ${b.ip}:80`,
      `-A KUBE-SERVICES -d ${VIP_C}/32 -p tcp --dport 80 -j DNAT --to-destination ${c.ip}:80`,
      `-A KUBE-SERVICES -d ${VIP_C}/32 -p udp --dport 9 -j DNAT --to-destination ${c.ip}:9`,
      '-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
      `-A KUBE-NODEPORTS -p tcp --dport ${NODEPORT_B} -j KUBE-MARK-MASQ`,
      `-A KUBE-NODEPORTS -p tcp --dport ${NODEPORT_B} -j DNAT --to-destination ${b.ip}:80`,
      `-A KUBE-NODEPORTS -p tcp --dport ${NODEPORT_C} -j KUBE-MARK-MASQ`,
      `-A KUBE-NODEPORTS -p tcp --dport ${NODEPORT_C} -j DNAT --to-destination ${c.ip}:80`,
      // ip-masq-agent: pod traffic leaving the VNet is masqueraded by the stack.
      `-A IP-MASQ-AGENT -d ${vm1.subnet} -j RETURN`,
      `-A IP-MASQ-AGENT -s ${vm1.subnet} -j MASQUERADE`,
      'COMMIT', '',
    ].join('\n');
    const res = await lab.execVm('vm1', ['iptables-restore', '--noflush'], { input: rules });
    t.equal(res.code, 0, `kube-proxy style rules installed in vm1: ${res.stderr}`);

    const apply = async (pods: Array<[PodHandle, DirectionPolicy, DirectionPolicy]>): Promise<void> => {
      const updates = pods.map(([p, ingress, egress]) => {
        const policy: EndpointPolicy = { family: 'ipv4', address: p.ip, pod: `default/${p.name}`, ingress, egress };
        return { hostVeth: Object.values(cni.vm1.state().endpoints).find((e) => e.ip === p.ip)!.hostVeth, policy };
      });
      const r = await lab.execVm('vm1', [process.execPath, DRIVER], { input: JSON.stringify({ mode, updates }), timeoutMs: 120_000 });
      if (!/"ok":true/.test(r.stdout)) throw new Error(`applyPolicies on vm1: ${r.stdout} ${r.stderr}`);
    };
    /** Connects and returns the answering server's name, or '-' if it did not connect. */
    const probe = (fromNetns: string, ip: string, port: number, expect: boolean): Promise<string> =>
      tcpWhoamiDetail(fromNetns, ip, port, { timeoutMs: expect ? 8000 : FAIL_MS }).then(
        (w) => w.name,
        () => '-',
      );
    const matrix = async (label: string, cases: Array<[string, string, string, number, string]>): Promise<void> => {
      const got: Record<string, string> = {};
      const want: Record<string, string> = {};
      for (const [name, from, ip, port, expect] of cases) {
        got[name] = await probe(from, ip, port, expect !== '-');
        want[name] = expect;
      }
      t.same(got, want, label);
    };
    const [A, C, NODE] = [a.netns, c.netns, vm1.netns];

    await matrix('no policy: every service path answers', [
      ['a -> ClusterIP of b', A, VIP_B, 80, 'b'],
      ['c (vm2) -> NodePort of b (masqueraded)', C, vm1.primaryIp, NODEPORT_B, 'b'],
      ['a -> NodePort of b (same node, masqueraded)', A, vm1.primaryIp, NODEPORT_B, 'b'],
      ['a -> NodePort of c (masqueraded out of vm1)', A, vm1.primaryIp, NODEPORT_C, 'c'],
      ['a -> internet (ip-masq-agent)', A, lab.internetIp, 80, 'internet'],
    ]);

    await apply([[b, DENY, OPEN]]);
    await matrix('b default-deny ingress', [
      ['a -> ClusterIP of b', A, VIP_B, 80, '-'],
      ['a -> b direct', A, b.ip, 80, '-'],
      ['c (vm2) -> NodePort of b (masqueraded)', C, vm1.primaryIp, NODEPORT_B, '-'],
      ['a -> NodePort of b (same node, masqueraded)', A, vm1.primaryIp, NODEPORT_B, '-'],
      ['the node itself -> b (kubelet probes)', NODE, b.ip, 80, 'b'],
      ["b -> c direct (its own connection's replies)", b.netns, c.ip, 80, 'c'],
      ["b -> ClusterIP of c (replies un-DNATed by the stack)", b.netns, VIP_C, 80, 'c'],
    ]);

    // ICMP errors of b's own flows (port unreachable: nothing listens on UDP 9) reach it through its default-deny
    // ingress, as conntrack's RELATED does in the iptables dataplane: the datagram is refused, not lost.
    t.same(
      { direct: await udpRefused(b.netns, c.ip, 9), service: await udpRefused(b.netns, VIP_C, 9) },
      { direct: 'refused', service: 'refused' },
      "b's UDP to a closed port of c, direct and through a ClusterIP: the port unreachable gets in",
    );

    await apply([[b, allowTcp80(`${a.ip}/32`), OPEN]]);
    await matrix('b admits a on TCP 80', [
      ['a -> ClusterIP of b', A, VIP_B, 80, 'b'],
      ['a -> NodePort of b (same node, masqueraded)', A, vm1.primaryIp, NODEPORT_B, 'b'],
      ['c (vm2) -> NodePort of b (masqueraded)', C, vm1.primaryIp, NODEPORT_B, '-'],
    ]);

    await apply([[b, allowTcp80(`${c.ip}/32`), OPEN]]);
    await matrix('b admits c on TCP 80', [
      ['c (vm2) -> NodePort of b (masqueraded)', C, vm1.primaryIp, NODEPORT_B, 'b'],
      ['a -> ClusterIP of b', A, VIP_B, 80, '-'],
    ]);

    await apply([[b, OPEN, OPEN], [a, OPEN, DENY]]);
    await matrix('a default-deny egress', [
      ['a -> NodePort of c (masqueraded out of vm1)', A, vm1.primaryIp, NODEPORT_C, '-'],
      ['a -> internet (ip-masq-agent)', A, lab.internetIp, 80, '-'],
      ['a -> ClusterIP of b', A, VIP_B, 80, '-'],
    ]);

    await apply([[a, OPEN, allowTcp80(`${c.ip}/32`, `${lab.internetIp}/32`)]]);
    await matrix('a may reach c and the internet on TCP 80', [
      ['a -> NodePort of c (masqueraded out of vm1)', A, vm1.primaryIp, NODEPORT_C, 'c'],
      ['a -> internet (ip-masq-agent)', A, lab.internetIp, 80, 'internet'],
      ['a -> NodePort of b (same node: b is not allowed)', A, vm1.primaryIp, NODEPORT_B, '-'],
    ]);
  });
}

/**
 * Sends a datagram to a closed port: 'refused' once the ICMP port unreachable came back (socat's read fails),
 * 'silent' if nothing came within the bound. A refusal is the verdict that matters; the bound only ends a failure.
 */
async function udpRefused(fromNetns: string, ip: string, port: number): Promise<'refused' | 'silent'> {
  for (let i = 0; i < 3; i++) {
    const r = await run(['nsenter', `--net=${fromNetns}`, '--', 'socat', '-T', '2', '-', `UDP:${ip}:${port}`], { input: 'x\n', timeoutMs: 10_000 });
    if (/Connection refused/.test(r.stderr)) return 'refused';
  }
  return 'silent';
}
