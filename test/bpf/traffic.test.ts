// Real packets through the attached programs, in throwaway namespaces:
//
//   pod1 (10.240.0.5) ─ azv1 ┐                         ┌ 10.240.0.1 gateway, 10.240.0.20 "VNet host"
//                            node (eth0 10.240.0.4/16) ─ fab0  [fabric]
//   pod2 (10.240.0.6) ─ azv2 ┘                         └ lo: 203.0.113.10 "internet", 172.16.1.10 "on-prem"
//
// The fabric delivers pod IPs to the node's NIC MAC (static neighbours, as
// Azure does) and, like Azure, lets only the node's primary IP reach the
// internet: pods get out only through our SNAT.
import t from 'tap';
import { EbpfPrograms, type EbpfConfig } from '../../control/dataplane/ebpf/programs.js';
import { Background, cleanupStale, echoArgv, ensureBpffs, Netns, pinRootFor, removePinRoot, unavailableReason } from './helpers/env.js';

const skip = unavailableReason() ?? false;

const PRIMARY = '10.240.0.4';
const GATEWAY = '10.240.0.1';
const VNET_HOST = '10.240.0.20';
const INTERNET = '203.0.113.10';
const ONPREM = '172.16.1.10';
const PODS = [
  { ip: '10.240.0.5', veth: 'azv1' },
  { ip: '10.240.0.6', veth: 'azv2' },
];

interface Lab {
  node: Netns;
  fabric: Netns;
  pods: Netns[];
  root: string;
  cfg: EbpfConfig;
  dp: EbpfPrograms;
  servers: Background[];
}

type T = { teardown(fn: () => unknown): void };

async function buildLab(t: T, tag: string, extra: Partial<EbpfConfig> = {}): Promise<Lab> {
  await cleanupStale();
  await ensureBpffs();
  const servers: Background[] = [];
  const node = await Netns.create(`${tag}-node`);
  t.teardown(() => node.delete());
  const fabric = await Netns.create(`${tag}-fab`);
  t.teardown(() => fabric.delete());
  const pods = [await Netns.create(`${tag}-pod1`), await Netns.create(`${tag}-pod2`)];
  for (const p of pods) t.teardown(() => p.delete());
  t.teardown(() => servers.forEach((s) => s.stop()));
  const root = pinRootFor(tag);
  t.teardown(() => removePinRoot(root));

  await node.ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'fab0', 'netns', fabric.name);
  await node.ip('addr', 'add', `${PRIMARY}/16`, 'dev', 'eth0');
  await node.ip('link', 'set', 'eth0', 'up');
  await node.ip('route', 'add', 'default', 'via', GATEWAY);
  await node.sysctl('net.ipv4.ip_forward', '1');
  const nicMac = await node.mac('eth0');

  await fabric.ip('addr', 'add', `${GATEWAY}/16`, 'dev', 'fab0');
  await fabric.ip('addr', 'add', `${VNET_HOST}/16`, 'dev', 'fab0');
  await fabric.ip('addr', 'add', `${INTERNET}/32`, 'dev', 'lo');
  await fabric.ip('addr', 'add', `${ONPREM}/32`, 'dev', 'lo');
  await fabric.ip('link', 'set', 'fab0', 'up');
  await fabric.exec('iptables', '-A', 'INPUT', '-d', INTERNET, '!', '-s', PRIMARY, '-j', 'DROP');

  for (const [i, spec] of PODS.entries()) {
    const pod = pods[i]!;
    await node.ip('link', 'add', spec.veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.name);
    await pod.ip('addr', 'add', `${spec.ip}/16`, 'dev', 'eth0');
    await pod.ip('link', 'set', 'eth0', 'up');
    await pod.ip('route', 'add', 'default', 'via', GATEWAY);
    await node.ip('link', 'set', spec.veth, 'up');
    await node.sysctl(`net.ipv4.conf.${spec.veth}.proxy_arp`, '1');
    await node.ip('route', 'add', `${spec.ip}/32`, 'dev', spec.veth);
    await fabric.ip('neigh', 'add', spec.ip, 'lladdr', nicMac, 'dev', 'fab0', 'nud', 'permanent');
  }

  const cfg: EbpfConfig = { primaryIp: PRIMARY, nicName: 'eth0', nicMac, noSnatCidrs: ['10.240.0.0/16', '172.16.0.0/12'], ...extra };
  const dp = await EbpfPrograms.open(root, cfg, { netns: node.path });
  t.teardown(() => dp.close());
  await dp.attachNic();
  for (const [i, spec] of PODS.entries()) {
    const ifindex = await dp.attachPod(spec.veth);
    dp.setEndpoint(spec.ip, { ifindex, podMac: await pods[i]!.mac('eth0'), hostMac: await node.mac(spec.veth) });
  }
  return { node, fabric, pods, root, cfg, dp, servers };
}

async function serve(lab: Lab, ns: Netns, proto: 'tcp' | 'udp', port: number, addr?: string): Promise<void> {
  lab.servers.push(await Background.start(ns, echoArgv('server', proto, String(port), ...(addr ? [addr] : [])), /ready/));
}

/** The echo server's view of the client, "ip:port", or null if the exchange failed. */
async function ask(ns: Netns, proto: 'tcp' | 'udp', host: string, port: number): Promise<{ ip: string; port: number } | null> {
  const r = await ns.run(...echoArgv('client', proto, host, String(port)));
  if (r.code !== 0) return null;
  const [ip, p] = r.stdout.trim().split(':');
  return { ip: ip!, port: Number(p) };
}

async function ping(ns: Netns, dst: string): Promise<boolean> {
  return (await ns.run('ping', '-c', '2', '-i', '0.2', '-W', '2', dst)).code === 0;
}

function counterDelta(dp: EbpfPrograms) {
  let last = dp.counters();
  return (): Record<string, number> => {
    const now = dp.counters();
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(now)) if (v !== last[k]) out[k] = Number(v - (last[k] ?? 0n));
    last = now;
    return out;
  };
}

t.test('same-node pods, the VNet and the internet through SNAT (kernel-stack path for non-VNet)', { skip }, async (t) => {
  const lab = await buildLab(t, 'trf');
  const [pod1, pod2] = lab.pods as [Netns, Netns];
  const delta = counterDelta(lab.dp);

  t.ok(await ping(pod1, PODS[1]!.ip), 'pod1 pings pod2');
  let d = delta();
  t.ok((d['forwarded-local'] ?? 0) >= 4, `requests and replies took redirect_peer (${JSON.stringify(d)})`);

  await serve(lab, pod2, 'tcp', 8080);
  const seen = await ask(pod1, 'tcp', PODS[1]!.ip, 8080);
  t.equal(seen?.ip, PODS[0]!.ip, 'TCP pod1 -> pod2: pod2 sees pod1 itself');
  t.ok((delta()['forwarded-local'] ?? 0) >= 6, 'the TCP exchange was forwarded locally');

  await serve(lab, lab.fabric, 'tcp', 9000);
  await serve(lab, lab.fabric, 'udp', 9001, INTERNET);
  const vnet = await ask(pod1, 'tcp', VNET_HOST, 9000);
  t.equal(vnet?.ip, PODS[0]!.ip, 'a VNet host sees the pod IP (no SNAT)');
  const onprem = await ask(pod1, 'tcp', ONPREM, 9000);
  t.equal(onprem?.ip, PODS[0]!.ip, 'the peered range sees the pod IP (no SNAT)');
  d = delta();
  t.ok((d['redirected-to-nic'] ?? 0) >= 2, 'VNet traffic left via redirect to eth0');
  t.ok((d['forwarded-from-nic'] ?? 0) >= 2, 'and came back via redirect_peer');

  const inet = await ask(pod1, 'tcp', INTERNET, 9000);
  t.equal(inet?.ip, PRIMARY, 'the internet sees the primary IP');
  t.ok(inet && inet.port >= 61000 && inet.port <= 65535, `from a NAT port (${inet?.port})`);
  const udp = await ask(pod2, 'udp', INTERNET, 9001);
  t.equal(udp?.ip, PRIMARY, 'UDP too');
  t.ok(await ping(pod1, INTERNET), 'ping to the internet through SNAT');
  d = delta();
  t.ok((d['snat-new'] ?? 0) >= 3, `new mappings (${JSON.stringify(d)})`);
  t.ok((d['rev-snat'] ?? 0) >= 3, 'replies translated back');
  t.ok((d['pass-to-stack'] ?? 0) >= 3, 'outbound went through the kernel stack (default)');
  const nat = await lab.dp.natEntries();
  t.ok(nat.some((e) => e.proto === 'udp' && e.pod.ip === PODS[1]!.ip && e.remote.port === 9001), 'UDP mapping listed');

  // The fabric reaching a pod directly (VNet inbound).
  await serve(lab, pod1, 'tcp', 8081);
  const inbound = await ask(lab.fabric, 'tcp', PODS[0]!.ip, 8081);
  t.equal(inbound?.ip, GATEWAY, 'inbound from the VNet reaches the pod');
});

t.test('fastPathExternal: redirected packets still get SNAT on eth0 egress', { skip }, async (t) => {
  const lab = await buildLab(t, 'trfx', { fastPathExternal: true });
  const [pod1] = lab.pods as [Netns, Netns];
  const delta = counterDelta(lab.dp);
  await serve(lab, lab.fabric, 'tcp', 9000);
  const inet = await ask(pod1, 'tcp', INTERNET, 9000);
  t.equal(inet?.ip, PRIMARY, 'SNATed although the packet bypassed the stack');
  t.ok(await ping(pod1, INTERNET));
  const d = delta();
  t.ok((d['redirected-to-nic'] ?? 0) >= 3, `left via redirect (${JSON.stringify(d)})`);
  t.ok((d['snat-new'] ?? 0) >= 2, 'tc egress on eth0 saw the redirected packets');
  t.ok((d['forwarded-from-nic'] ?? 0) >= 3, 'replies redirected to the pod');
  t.notOk(d['pass-to-stack'], 'nothing took the stack path');
});

t.test('kube-proxy style DNAT to a local pod keeps working (conntrack check)', { skip }, async (t) => {
  const VIP = '10.0.0.10';
  for (const conntrackCheck of [true, false]) {
    const lab = await buildLab(t, conntrackCheck ? 'kp' : 'kpoff', { conntrackCheck });
    const [pod1, pod2] = lab.pods as [Netns, Netns];
    await lab.node.exec('iptables', '-t', 'nat', '-A', 'PREROUTING', '-d', VIP, '-p', 'tcp', '--dport', '80', '-j', 'DNAT', '--to-destination', `${PODS[1]!.ip}:8080`);
    await serve(lab, pod2, 'tcp', 8080);
    const delta = counterDelta(lab.dp);
    const seen = await ask(pod1, 'tcp', VIP, 80);
    if (conntrackCheck) {
      t.equal(seen?.ip, PODS[0]!.ip, 'pod1 -> ClusterIP -> pod2 and back');
      t.ok((delta()['pass-conntrack-nat'] ?? 0) >= 1, "pod2's replies were left to the stack for un-DNAT");
    } else {
      t.equal(seen, null, 'control: without the check, replies skip un-DNAT and the connection fails');
    }
  }
});

t.test('pins outlive the loader; endpoint churn leaves exactly the live endpoints', { skip }, async (t) => {
  const lab = await buildLab(t, 'pin');
  const [pod1] = lab.pods as [Netns, Netns];
  lab.dp.close();
  t.ok(await ping(pod1, PODS[1]!.ip), 'traffic flows with no process holding the programs');
  const dp = await EbpfPrograms.open(lab.root, undefined, { netns: lab.node.path });
  t.teardown(() => dp.close());
  t.same((await dp.listEndpoints()).map((e) => e.ip), PODS.map((p) => p.ip));
  t.ok((dp.counters()['forwarded-local'] ?? 0n) >= 4n, 'counters kept across reopen');
  t.equal((await dp.attachedHooks()).length, 6, 'eth0 ingress+egress and two pod veths (from_pod + to_pod each)');

  const live = new Set(PODS.map((p) => p.ip));
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 40; i++) {
      const ip = `10.240.${10 + round}.${i + 1}`;
      dp.setEndpoint(ip, { ifindex: 1000 + i, podMac: '02:00:00:00:00:01', hostMac: '02:00:00:00:00:02' });
      live.add(ip);
    }
    for (let i = 0; i < 40; i += round + 2) {
      const ip = `10.240.${10 + round}.${i + 1}`;
      t.equal(await dp.deleteEndpoint(ip), true);
      live.delete(ip);
    }
  }
  t.same(new Set((await dp.listEndpoints()).map((e) => e.ip)), live, 'map == live set');
  t.ok(await ping(pod1, PODS[1]!.ip), 'real pods unaffected by the churn');
});
