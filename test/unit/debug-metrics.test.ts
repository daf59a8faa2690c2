// DaemonMetrics on its own (control/daemon/metrics.ts): the exposition a
// scrape returns for known events, kernel counters that are set (never
// accumulated twice), the address rules, and both transports.
import t from 'tap';
import http from 'node:http';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DaemonMetrics, parseMetricsAddr, type DataplaneStats } from '../../control/daemon/metrics.js';
import { emptyIpamState, applyPool, allocate } from '../../control/ipam/allocator.js';
import type { NodeState } from '../../control/store/node-store.js';
import { InvalidConfigError } from '../../control/errors.js';

function state(): NodeState {
  const ipam = emptyIpamState();
  applyPool(ipam, { mac: '00:0d:3a:00:00:04', primaryIp: '10.240.0.4', subnet: '10.240.0.0/16', prefixLength: 16, gateway: '10.240.0.1', addresses: ['10.240.1.4', '10.240.1.5', '10.240.1.6'] });
  allocate(ipam, { containerId: 'c1', ifName: 'eth0' }, { maxPods: 250 });
  return { version: 1, ipam, endpoints: {} };
}

const sample = (text: string, series: string): number | undefined => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

function get(opts: http.RequestOptions): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ ...opts, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

t.test('operations, failures, pool and kernel counters', async (t) => {
  let dp: DataplaneStats = { natEntries: 3, counters: { 'snat-new': 5n, 'drop-malformed': 2n, 'drop-nat-port-exhausted': 1n } };
  const m = new DaemonMetrics({ state: async () => state(), dataplane: async () => dp });
  m.onRequest('ADD', true, 0.02);
  m.onRequest('ADD', false, 0.5, 100);
  m.onRequest('IPAM_ADD', false, 0.1, 100);
  m.onRequest('DEL', false, 0.1, 11);
  m.recordReconcile({ removed: ['a/eth0'], rebuilt: [], strayVeths: ['azv1', 'azv2'] });
  let text = await m.render();
  t.equal(sample(text, 'vnet_cni_operations_total{verb="ADD",result="ok"}'), 1);
  t.equal(sample(text, 'vnet_cni_operations_total{verb="ADD",result="error"}'), 1);
  t.equal(sample(text, 'vnet_cni_operation_errors_total{verb="DEL",code="11"}'), 1);
  t.equal(sample(text, 'vnet_cni_ip_allocation_failures_total'), 2, 'ADD and IPAM_ADD with code 100');
  t.equal(sample(text, 'vnet_cni_operation_duration_seconds_bucket{le="0.025",verb="ADD",result="ok"}'), 1);
  t.equal(sample(text, 'vnet_cni_operation_duration_seconds_bucket{le="0.25",verb="ADD",result="error"}'), 0);
  t.equal(sample(text, 'vnet_cni_pool_addresses{state="size"}'), 3);
  t.equal(sample(text, 'vnet_cni_pool_addresses{state="used"}'), 1);
  t.equal(sample(text, 'vnet_cni_pool_addresses{state="free"}'), 2);
  t.equal(sample(text, 'vnet_cni_nat_entries'), 3);
  t.equal(sample(text, 'vnet_cni_nat_allocation_failures_total'), 1);
  t.equal(sample(text, 'vnet_cni_dataplane_drops_total{reason="drop-malformed"}'), 2);
  t.equal(sample(text, 'vnet_cni_dataplane_drops_total{reason="snat-new"}'), undefined, 'only drops in the drops family');
  t.equal(sample(text, 'vnet_cni_dataplane_packets_total{reason="snat-new"}'), 5);
  t.equal(sample(text, 'vnet_cni_reconcile_runs_total{result="ok"}'), 1);
  t.equal(sample(text, 'vnet_cni_reconcile_fixes_total{kind="stray_veth"}'), 2);
  t.equal(sample(text, 'vnet_cni_reconcile_fixes_total{kind="rebuilt"}'), 0);

  dp = { natEntries: 0, counters: { 'snat-new': 7n, 'drop-malformed': 2n, 'drop-nat-port-exhausted': 1n } };
  text = await m.render();
  t.equal(sample(text, 'vnet_cni_dataplane_packets_total{reason="snat-new"}'), 7, 'kernel counters are set, not added to');
  t.equal(sample(text, 'vnet_cni_nat_allocation_failures_total'), 1);
  t.equal(sample(text, 'vnet_cni_nat_entries'), 0);
});

t.test('NetworkPolicy drops by pod and direction, set from the kernel', async (t) => {
  const withPod = (): NodeState => ({ ...state(), endpoints: { 'c1/eth0': { ip: '10.240.1.4', podName: 'web', podNamespace: 'shop' } as never } });
  let dp: DataplaneStats = {
    natEntries: 0,
    counters: {},
    policyDrops: [
      { ip: '10.240.1.4', direction: 'ingress', packets: 3n },
      { ip: '10.240.1.9', direction: 'egress', packets: 1n },
    ],
  };
  const m = new DaemonMetrics({ state: async () => withPod(), dataplane: async () => dp });
  let text = await m.render();
  t.equal(sample(text, 'vnet_cni_policy_drops_total{pod="shop/web",direction="ingress"}'), 3, 'named by the pod holding the address');
  t.equal(sample(text, 'vnet_cni_policy_drops_total{pod="10.240.1.9",direction="egress"}'), 1, 'an address no endpoint holds keeps its IP');
  dp = { ...dp, policyDrops: [{ ip: '10.240.1.4', direction: 'ingress', packets: 5n }] };
  text = await m.render();
  t.equal(sample(text, 'vnet_cni_policy_drops_total{pod="shop/web",direction="ingress"}'), 5, 'set, not added to');
  t.equal(sample(text, 'vnet_cni_policy_drops_total{pod="10.240.1.9",direction="egress"}'), undefined, 'gone with its map entry');
});

t.test('a failing source is counted, the scrape still answers', async (t) => {
  const m = new DaemonMetrics({ state: async () => { throw new Error('disk gone'); } });
  const text = await m.render();
  t.equal(sample(text, 'vnet_cni_metrics_source_errors_total{source="state"}'), 1);
  m.recordReconcile(new Error('x'));
  t.equal(sample(await m.render(), 'vnet_cni_reconcile_runs_total{result="error"}'), 1);
});

t.test('--metrics-addr: loopback only', async (t) => {
  t.same(parseMetricsAddr('127.0.0.1:9153'), { host: '127.0.0.1', port: 9153 });
  t.same(parseMetricsAddr('[::1]:80'), { host: '::1', port: 80 });
  t.same(parseMetricsAddr('localhost:1'), { host: 'localhost', port: 1 });
  for (const bad of ['0.0.0.0:9153', '10.0.0.1:80', '127.0.0.1', '127.0.0.1:0', '127.0.0.1:70000', ':9153']) t.throws(() => parseMetricsAddr(bad), InvalidConfigError, bad);
});

t.test('served over a 0600 unix socket and over loopback TCP', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), `vnet-metrics-${process.pid}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sock = path.join(dir, 'run', 'metrics.sock');
  const m = new DaemonMetrics({ state: async () => state() });
  await m.listen({ socketPath: sock });
  t.equal(statSync(sock).mode & 0o777, 0o600, 'root-only socket');
  m.onRequest('STATUS', true, 0.001);
  const res = await get({ socketPath: sock, path: '/metrics' });
  t.equal(res.status, 200);
  t.equal(sample(res.body, 'vnet_cni_operations_total{verb="STATUS",result="ok"}'), 1);
  t.equal((await get({ socketPath: sock, path: '/other' })).status, 404);
  await m.close();
  t.throws(() => statSync(sock), 'socket removed on close');

  const tcp = new DaemonMetrics({ state: async () => state() });
  await tcp.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => tcp.close());
  const r2 = await get({ host: '127.0.0.1', port: tcp.port()!, path: '/metrics' });
  t.equal(sample(r2.body, 'vnet_cni_pool_addresses{state="free"}'), 2);
});
