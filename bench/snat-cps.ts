// Scenario 3: new connections per second from a pod to the internet host
// through SNAT (connect, 1-byte request/response, server closes first), two
// clients in parallel, bounded by a count and a time per repeat.
//
// Each repeat uses fresh server ports: a closed TCP mapping keeps its port for
// 60 s after FIN both ways (10 s after RST) in a 4,535-port range per remote
// ip:port, so reusing one port would measure that hold time, not speed.
import type { DataplaneLab } from './lib/dataplane-lab.js';
import type { LoadTools } from './lib/load.js';
import type { BenchOptions } from './lib/options.js';
import { median } from './lib/stats.js';
import { ratioText, targetText, type Row } from './lib/table.js';

const BASE_PORT = 7200;
const CLIENTS = 2;
const PER_CLIENT = 4000;

export async function runSnatCps(dp: DataplaneLab, tools: LoadTools, opts: BenchOptions): Promise<Row[]> {
  const seconds = opts.quick ? 2 : 3;
  const cps = new Map<string, number[]>(dp.toInternet.map((t) => [t.setup, []]));
  const failed = new Map<string, number>(dp.toInternet.map((t) => [t.setup, 0]));
  let portBase = BASE_PORT;
  for (let r = 0; r < opts.repeats; r++) {
    for (const from of dp.toInternet) {
      const ports = Array.from({ length: CLIENTS }, (_, i) => portBase + i);
      portBase += CLIENTS;
      const res = await tools.connRate(from.client, dp.internet, ports, PER_CLIENT, seconds);
      cps.get(from.setup)!.push(res.cps);
      failed.set(from.setup, failed.get(from.setup)! + res.failed);
      opts.log(`snat-cps ${from.setup} #${r + 1}: ${res.cps.toFixed(0)} conn/s (${res.ok} ok, ${res.failed} failed, ${res.seconds.toFixed(1)} s)`);
    }
  }
  const value = (setup: string): number => median(cps.get(setup) ?? []);
  const ceiling = value('VM NIC (no pod)');
  const ipt = value('vnet iptables');
  return dp.toInternet.map((t) => {
    const v = value(t.setup);
    const row: Row = {
      scenario: 'new conns pod->internet (SNAT)',
      setup: t.setup,
      value: v,
      unit: 'conn/s',
      detail: `${failed.get(t.setup)} failed`,
      vsPeer: t.setup === 'VM NIC (no pod)' ? 'ceiling (no NAT in VM)' : ratioText(v, ceiling, 'VM NIC'),
    };
    if (t.setup === 'vnet ebpf') {
      row.vsPeer += `, ${ratioText(v, ipt, 'iptables')}`;
      row.target = targetText(Number.isFinite(ipt) ? v >= 1.2 * ipt : undefined, '>= 1.2x iptables');
    }
    return row;
  });
}
