// `vnetctl debug` inside a lab VM with real pods, in both dataplane modes:
// the views show the live endpoints, programs, NAT flows, counters, rules and
// pool, and an entry removed behind the control plane's back is flagged.
import t from 'tap';
import path from 'node:path';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { ping } from '../../lab/tools/net.js';
import { reasonLabels } from '../../control/debug/views/counters.js';
import { MODES, REPO, VmCni, azureConflist } from './helpers/cni-harness.js';

const VNETCTL = path.join(REPO, 'bin', 'vnetctl');
const AZURE_VNET = path.join(REPO, 'bin', 'azure-vnet');

interface EndpointRowJson {
  ip: string;
  store?: { podName?: string; hostVeth: string; podMac: string };
  map?: { ifindex: number; ifname?: string; podMac: string };
  veth?: { ifindex: number };
  issues: { kind: string; detail: string }[];
}

for (const mode of MODES) {
  t.test(`vnetctl debug in ${mode} mode`, async (t) => {
    const lab = await Lab.up(defaultSpec(1, 4));
    t.teardown(() => lab.down());
    const vm = lab.vmInfo('vm1');
    const cni = new VmCni(lab, 'vm1', azureConflist({ dataplane: mode, portmap: false }));
    const a = await cni.addPod('a');
    const b = await cni.addPod('b');

    const debug = async (args: string[], bin = VNETCTL): Promise<string> => {
      const res = await lab.execVm('vm1', [bin, 'debug', ...args], { timeoutMs: 60_000 });
      if (res.code !== 0) throw new Error(`${path.basename(bin)} debug ${args.join(' ')} exited ${res.code}: ${res.stderr}`);
      return res.stdout;
    };
    const endpoints = async (): Promise<EndpointRowJson[]> => (JSON.parse(await debug(['endpoints', '--json'])) as { endpoints: EndpointRowJson[] }).endpoints;

    t.test('endpoints: both live pods, kernel and store agreeing', async (t) => {
      const rows = await endpoints();
      t.same(rows.map((r) => r.ip), [a.ip, b.ip]);
      for (const [row, pod] of [[rows[0]!, a], [rows[1]!, b]] as const) {
        t.equal(row.store?.podName, pod.name, `${pod.ip} belongs to pod ${pod.name}`);
        t.same(row.issues, [], `${pod.ip}: no issues`);
        if (mode === 'ebpf') {
          t.equal(row.map?.ifindex, row.veth?.ifindex, `${pod.ip}: the map points at the pod's veth`);
          t.equal(row.map?.ifname, row.store?.hostVeth);
          t.equal(row.map?.podMac, (pod.result.interfaces as { mac: string; sandbox?: string }[]).find((i) => i.sandbox)!.mac, 'the map has the MAC the ADD result reported');
        }
      }
      const text = await debug(['endpoints']);
      t.match(text, 'control plane: state file /var/lib/vnet-cni/state.json');
      t.match(text, new RegExp(`${a.ip.replaceAll('.', '\\.')}\\s+default/a\\s+c-vm1-a\\s+azv\\S+\\s+ready`), 'the table row of pod a');
      t.match(text, 'issues: none');
    });

    t.test('pool, also through the plugin binary', async (t) => {
      const pool = JSON.parse(await debug(['pool', '--json'], AZURE_VNET)) as { summary: Record<string, unknown>; allocations: { ip: string; podName?: string; endpoint: boolean }[] };
      t.match(pool.summary, { size: 4, used: 2, free: 2, orphaned: 0, subnet: vm.subnet, primaryIp: vm.primaryIp });
      t.same(pool.allocations.map((x) => [x.ip, x.podName, x.endpoint]), [[a.ip, 'a', true], [b.ip, 'b', true]]);
    });

    if (mode === 'ebpf') {
      t.test('progs: our programs on eth0 and on each pod veth', async (t) => {
        const v = JSON.parse(await debug(['progs', '--json'])) as { hooks: { ifname: string; direction: string; progName: string; ours: boolean; tag: string }[]; issues: string[]; pinned: Record<string, number> };
        const hooks = v.hooks.map((h) => `${h.ifname}/${h.direction}/${h.progName}/${h.ours}`).sort();
        const veths = (await endpoints()).map((r) => r.store!.hostVeth);
        // Each pod veth carries from_pod (the pod's packets) and to_pod (what the stack delivers to the pod: policy).
        t.same(hooks, ['eth0/egress/to_nic/true', 'eth0/ingress/from_nic/true', ...veths.flatMap((v) => [`${v}/ingress/from_pod/true`, `${v}/egress/to_pod/true`])].sort());
        t.ok(v.hooks.every((h) => /^[0-9a-f]{16}$/.test(h.tag)), 'every program has its tag');
        t.same(Object.keys(v.pinned).sort(), ['from_nic', 'from_pod', 'to_nic', 'to_pod']);
        t.same(v.issues, []);
      });

      t.test('nat and counters: one ping to the internet is one SNAT flow', async (t) => {
        t.ok(await ping(a.netns, lab.internetIp, { count: 1 }), 'pod a pings the internet host');
        const nat = JSON.parse(await debug(['nat', '--json'])) as { entries: { proto: string; pod: { ip: string }; nat: { ip: string; port: number }; remote: { ip: string }; orphan: boolean }[] };
        t.equal(nat.entries.length, 1);
        t.match(nat.entries[0], { proto: 'icmp', pod: { ip: a.ip }, nat: { ip: vm.primaryIp }, remote: { ip: lab.internetIp }, orphan: false });
        const counters = JSON.parse(await debug(['counters', '--json'])) as { reason: string; packets: number }[];
        const by = Object.fromEntries(counters.map((c) => [c.reason, c.packets]));
        t.equal(by['snat-new'], 1, 'one SNAT mapping created');
        t.ok((by['rev-snat'] ?? 0) >= 1, 'the reply was translated back');
        t.same(counters.map((c) => c.reason), await reasonLabels(), 'every reason of VNET_REASONS is listed, in order');
      });

      t.test('an endpoint map entry deleted behind the daemon\'s back is flagged', async (t) => {
        const key = b.ip.split('.');
        const del = await lab.execVm('vm1', ['bpftool', 'map', 'delete', 'pinned', `/sys/fs/bpf/vnet-cni/${(await nodeName(lab))}/maps/vnet_endpoints`, 'key', ...key]);
        t.equal(del.code, 0, 'bpftool map delete', { stderr: del.stderr });
        const rows = await endpoints();
        t.same(rows.find((r) => r.ip === a.ip)?.issues, [], 'pod a is still fine');
        t.same(rows.find((r) => r.ip === b.ip)?.issues.map((i) => i.kind), ['in-store-not-in-map'], 'pod b is flagged');
        const summary = await debug([]);
        t.match(summary, /endpoints\s+2 \(1 issues\)/, 'the summary counts the issue');
        t.match(summary, `! ${b.ip} in-store-not-in-map`);
      });
    } else {
      t.test('iptables: our chains with counts, one ebtables DNAT per pod', async (t) => {
        const v = JSON.parse(await debug(['iptables', '--json'])) as { iptables: { chain: string; rule: string; packets: number }[]; ebtables: { chain: string; rule: string }[] };
        t.ok(v.iptables.some((r) => r.chain === 'VNET-SNAT' && /MASQUERADE/.test(r.rule)), 'VNET-SNAT masquerades');
        t.ok(v.iptables.some((r) => r.chain === 'POSTROUTING' && /-j VNET-SNAT/.test(r.rule)), 'the jump into it');
        t.ok(v.iptables.every((r) => Number.isInteger(r.packets)), 'packet counts');
        for (const p of [a, b]) t.equal(v.ebtables.filter((r) => r.chain === 'VNET-PRE' && r.rule.includes(`--ip-dst ${p.ip} `)).length, 1, `DNAT rule for ${p.ip}`);
      });

      t.test('an ebtables rule deleted behind the plugin\'s back is flagged', async (t) => {
        const rule = ((JSON.parse(await debug(['iptables', '--json'])) as { ebtables: { chain: string; rule: string }[] }).ebtables).find((r) => r.rule.includes(`--ip-dst ${b.ip} `))!;
        const del = await lab.execVm('vm1', ['ebtables', '-t', 'nat', '-D', 'VNET-PRE', ...rule.rule.split(' ')]);
        t.equal(del.code, 0, 'ebtables -D', { stderr: del.stderr });
        const rows = await endpoints();
        t.same(rows.find((r) => r.ip === a.ip)?.issues, []);
        t.same(rows.find((r) => r.ip === b.ip)?.issues.map((i) => i.kind), ['ebtables-rule-missing']);
      });
    }

    t.test('DEL leaves the views empty', async (t) => {
      await cni.del(a);
      await cni.del(b);
      t.same(await endpoints(), []);
      const summary = await debug([]);
      t.match(summary, /mode\s+none/, 'no node state left');
    });
  });
}

/** The node name the plugin used (os.hostname() of the machine: the lab has no UTS namespace). */
async function nodeName(lab: Lab): Promise<string> {
  const res = await lab.execVm('vm1', ['hostname']);
  return res.stdout.trim();
}
