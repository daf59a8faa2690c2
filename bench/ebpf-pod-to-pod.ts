// Same-node pod <-> pod throughput and latency, three ways, measured in one run:
//   veth-direct  two namespaces joined by one veth pair (no node hop): the ceiling
//   kernel-route pod veth -> node netns routing (proxy_arp, host routes) -> pod veth
//   ebpf         the same topology with from_pod attached: redirect_peer skips the node's stack
// Usage (root): node dist/bench/ebpf-pod-to-pod.js [seconds=5]
// Everything lives in namespaces named vbt<pid>-bench-*, removed at the end.
import { EbpfPrograms } from '../control/dataplane/ebpf/programs.js';
import { Background, cleanupStale, ensureBpffs, Netns, pinRootFor, removePinRoot } from '../test/bpf/helpers/env.js';

const seconds = Number(process.argv[2] ?? 5);
const POD1 = '10.240.0.5';
const POD2 = '10.240.0.6';

interface Row {
  scenario: string;
  tcpGbps: number;
  rrLatencyUs: number;
}

async function iperf(client: Netns, server: Netns, dst: string): Promise<number> {
  const srv = await Background.start(server, ['iperf3', '-s', '-1', '--forceflush', '-B', dst], /Server listening/);
  try {
    const out = await client.exec('iperf3', '-c', dst, '-t', String(seconds), '-J');
    const json = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } };
    return json.end.sum_received.bits_per_second / 1e9;
  } finally {
    srv.stop();
  }
}

/** Median ping RTT (µs) over 200 probes at 10 ms spacing. */
async function latency(client: Netns, dst: string): Promise<number> {
  const out = await client.exec('ping', '-c', '200', '-i', '0.01', '-q', dst);
  const m = /= [\d.]+\/([\d.]+)\//.exec(out);
  return m ? Number(m[1]) * 1000 : NaN;
}

async function podPair(tag: string): Promise<Netns[]> {
  return [await Netns.create(`bench-${tag}-p1`), await Netns.create(`bench-${tag}-p2`)];
}

async function veth(node: Netns, pod: Netns, hostIf: string, ip: string): Promise<void> {
  await node.ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.name);
  await pod.ip('addr', 'add', `${ip}/16`, 'dev', 'eth0');
  await pod.ip('link', 'set', 'eth0', 'up');
  await pod.ip('route', 'add', 'default', 'via', '10.240.0.1');
  await node.ip('link', 'set', hostIf, 'up');
  await node.sysctl(`net.ipv4.conf.${hostIf}.proxy_arp`, '1');
  await node.ip('route', 'add', `${ip}/32`, 'dev', hostIf);
}

async function main(): Promise<void> {
  await cleanupStale();
  await ensureBpffs();
  const created: Netns[] = [];
  const root = pinRootFor('bench');
  const rows: Row[] = [];
  try {
    // veth-direct
    const [d1, d2] = (await podPair('d')) as [Netns, Netns];
    created.push(d1, d2);
    await d1.ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', d2.name);
    await d1.ip('addr', 'add', `${POD1}/16`, 'dev', 'eth0');
    await d2.ip('addr', 'add', `${POD2}/16`, 'dev', 'eth0');
    await d1.ip('link', 'set', 'eth0', 'up');
    await d2.ip('link', 'set', 'eth0', 'up');
    rows.push({ scenario: 'veth-direct', tcpGbps: await iperf(d1, d2, POD2), rrLatencyUs: await latency(d1, POD2) });

    // node-routed topology, first without programs, then with them
    const node = await Netns.create('bench-node');
    created.push(node);
    const [p1, p2] = (await podPair('r')) as [Netns, Netns];
    created.push(p1, p2);
    await node.sysctl('net.ipv4.ip_forward', '1');
    await node.ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0');
    await node.ip('addr', 'add', '10.240.0.4/16', 'dev', 'eth0');
    await node.ip('link', 'set', 'eth0', 'up');
    await veth(node, p1, 'azv1', POD1);
    await veth(node, p2, 'azv2', POD2);
    rows.push({ scenario: 'kernel-route', tcpGbps: await iperf(p1, p2, POD2), rrLatencyUs: await latency(p1, POD2) });

    const dp = await EbpfPrograms.open(root, { primaryIp: '10.240.0.4', nicName: 'eth0', nicMac: await node.mac('eth0'), noSnatCidrs: ['10.240.0.0/16'] }, { netns: node.path });
    try {
      for (const [pod, hostIf, ip] of [[p1, 'azv1', POD1], [p2, 'azv2', POD2]] as const) {
        const ifindex = await dp.attachPod(hostIf);
        dp.setEndpoint(ip, { ifindex, podMac: await pod.mac('eth0'), hostMac: await node.mac(hostIf) });
      }
      const before = dp.counters()['forwarded-local'] ?? 0n;
      rows.push({ scenario: 'ebpf', tcpGbps: await iperf(p1, p2, POD2), rrLatencyUs: await latency(p1, POD2) });
      const redirected = (dp.counters()['forwarded-local'] ?? 0n) - before;
      if (redirected === 0n) throw new Error('ebpf row did not go through redirect_peer');
    } finally {
      await dp.unloadAll();
    }
  } finally {
    for (const ns of created.reverse()) await ns.delete();
    removePinRoot(root);
  }
  console.log(`same-node pod -> pod, iperf3 TCP ${seconds} s, ping RTT median of 200`);
  console.log('scenario       TCP Gbit/s   RTT µs');
  for (const r of rows) console.log(`${r.scenario.padEnd(14)} ${r.tcpGbps.toFixed(2).padStart(10)}   ${r.rrLatencyUs.toFixed(1).padStart(6)}`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
