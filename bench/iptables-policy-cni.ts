// Scenario: CNI ADD/DEL latency in the iptables dataplane with NetworkPolicy
// on, with few and with many endpoints on the node. One VM runs `vnetctl
// daemon --policy-dir` with one policy selecting every pod (ingress from the
// VNet on TCP 80, egress to the VNet): each ADD programs the pod's two policy
// chains and its dispatch lines, each DEL removes them. Serial ADD+DEL pairs
// through the native shim (libcni, as kubelet's runtime) on a node holding one
// other policed pod (so the node stays set up), then again once BULK more
// pods (all policed) are up. What grows with
// the node is whatever an ADD reads or rewrites beyond its own rules; the
// daemon's `request served` log gives the programs each ADD ran.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Lab } from '../lab/lab.js';
import { defaultSpec } from '../lab/spec.js';
import { SHIM_CNI_PATH, VmCni, type PodHandle } from '../test/lab/helpers/cni-harness.js';
import { VmDaemon, DAEMON_SOCKET } from './lib/daemon.js';
import { ensureCniClient, podArgs, vnetConflist } from './lib/dataplane-lab.js';
import type { BenchOptions } from './lib/options.js';
import { mapLimit, quantile, timed } from './lib/stats.js';
import type { Row } from './lib/table.js';

const BULK = 200;
const POLICY = `
kind: NetworkPolicy
metadata: { name: every-pod, namespace: default }
spec:
  podSelector: {}
  policyTypes: [ Ingress, Egress ]
  ingress: [ { from: [ { ipBlock: { cidr: 10.240.0.0/16 } } ], ports: [ { protocol: TCP, port: 80 } ] } ]
  egress: [ { to: [ { ipBlock: { cidr: 10.240.0.0/16 } } ] } ]
`;

interface Pairs {
  add: number[];
  del: number[];
  ids: Set<string>;
}

/** The programs a serial ADD/DEL ran inside the daemon (p50 count and ms per program). */
function spawnsOf(lab: Lab, ids: Set<string>, verb: 'ADD' | 'DEL'): string {
  const text = readFileSync(path.join(lab.vmPaths('vm1').log, 'vnet-cni-daemon.log'), 'utf8');
  const recs: Record<string, { n: number; ms: number }>[] = [];
  for (const line of text.split('\n')) {
    if (!line.includes('"request served"')) continue;
    const rec = JSON.parse(line) as { verb?: string; containerId?: string; spawns?: Record<string, { n: number; ms: number }> };
    if (rec.verb === verb && rec.containerId && ids.has(rec.containerId)) recs.push(rec.spawns ?? {});
  }
  const progs = [...new Set(recs.flatMap((r) => Object.keys(r)))].sort();
  return progs
    .map((p) => `${p} ${quantile(recs.map((r) => r[p]?.n ?? 0), 0.5)}x ${quantile(recs.map((r) => r[p]?.ms ?? 0), 0.5).toFixed(0)} ms`)
    .join(', ');
}

export async function runIptablesPolicyCni(opts: BenchOptions): Promise<Row[]> {
  await ensureCniClient();
  const lab = await Lab.up(defaultSpec(1, BULK + 16));
  let daemon: VmDaemon | undefined;
  try {
    const dir = path.join(lab.vmPaths('vm1').root, 'policy');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'every-pod.yaml'), POLICY);
    daemon = await VmDaemon.start(lab, 'vm1', 30_000, ['--policy-dir', dir]);
    const cni = new VmCni(lab, 'vm1', vnetConflist('iptables', { daemonSocket: DAEMON_SOCKET }), '10-azure.conflist', SHIM_CNI_PATH);
    let seq = 0;
    const netns = (n: number, tag: string) => mapLimit(Array.from({ length: n }, () => `${tag}${seq++}`), 8, async (pod) => ({ pod, netns: await lab.addPodNetns('vm1', pod) }));
    const add = (p: { pod: string; netns: string }) => cni.add(p.pod, p.netns, `bench-pol-${p.pod}`, { args: podArgs(p.pod) });
    const del = async (h: PodHandle) => {
      await cni.del(h);
      await lab.removePodNetns(h.netns);
    };
    /** `n` pods, each ADDed then DELed before the next: the node keeps what it had plus one. */
    const pairs = async (n: number, tag: string): Promise<Pairs> => {
      const out: Pairs = { add: [], del: [], ids: new Set() };
      for (const p of await netns(n, tag)) {
        const a = await timed(() => add(p));
        out.add.push(a.ms);
        out.ids.add(`bench-pol-${p.pod}`);
        out.del.push((await timed(() => del(a.value))).ms);
      }
      return out;
    };
    // The node's first ADD sets the node up (and the policy source syncs), the last DEL tears it down:
    // one pod stays for the whole run, so every measured call finds the node set up.
    const [anchorNetns] = await netns(1, 'anchor');
    const anchor = await add(anchorNetns!);
    await pairs(2, 'w');
    const n = opts.quick ? 12 : 24;
    const few = await pairs(n, 's');
    opts.log(`iptables policy CNI, 2 endpoints: ADD p50 ${quantile(few.add, 0.5).toFixed(0)} ms, DEL p50 ${quantile(few.del, 0.5).toFixed(0)} ms`);
    const bulkNetns = await netns(BULK, 'b');
    const bulk = await timed(() => mapLimit(bulkNetns, 16, add));
    opts.log(`iptables policy CNI: ${BULK} policed pods up in ${(bulk.ms / 1000).toFixed(1)} s`);
    const many = await pairs(n, 'm');
    opts.log(`iptables policy CNI, ${BULK + 2} endpoints: ADD p50 ${quantile(many.add, 0.5).toFixed(0)} ms, DEL p50 ${quantile(many.del, 0.5).toFixed(0)} ms`);
    const down = await timed(() => mapLimit(bulk.value, 16, del));
    await del(anchor);
    const rows: Row[] = [];
    for (const [label, l] of [['2 endpoints', few], [`${BULK + 2} endpoints`, many]] as const) {
      rows.push({ scenario: 'CNI ADD serial, iptables policy', setup: `daemon via shim, ${label}`, value: quantile(l.add, 0.5), unit: 'ms p50', detail: `p99 ${quantile(l.add, 0.99).toFixed(0)} ms (n=${l.add.length}); daemon spawns p50: ${spawnsOf(lab, l.ids, 'ADD')}` });
      rows.push({ scenario: 'CNI DEL serial, iptables policy', setup: `daemon via shim, ${label}`, value: quantile(l.del, 0.5), unit: 'ms p50', detail: `p99 ${quantile(l.del, 0.99).toFixed(0)} ms (n=${l.del.length}); daemon spawns p50: ${spawnsOf(lab, l.ids, 'DEL')}` });
    }
    rows.push({ scenario: `${BULK} policed pods up / down (16 in flight)`, setup: 'daemon via shim', value: bulk.ms / 1000, unit: 's up', detail: `${(down.ms / 1000).toFixed(1)} s down` });
    return rows;
  } finally {
    await daemon?.stop();
    await lab.down();
  }
}
