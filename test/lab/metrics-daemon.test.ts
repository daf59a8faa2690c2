// The daemon's metrics endpoint in a lab VM: a known sequence of CNI calls
// through libcni (forwarded to the daemon via "daemonSocket") shows up in the
// scrape with exact counts, beside the pool, the endpoints and, in ebpf mode,
// the kernel's NAT table and counters (compared with `vnetctl debug`).
import t from 'tap';
import http from 'node:http';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { ping } from '../../lab/tools/net.js';
import { startChild, stopChild, waitForLine } from '../../lab/children.js';
import { vmExecArgv } from '../../lab/vm-exec.js';
import { CniRunFailed, MODES, REPO, VmCni, azureConflist } from './helpers/cni-harness.js';

const SOCKET = '/run/vnet-cni/daemon.sock';
const METRICS_SOCKET = '/run/vnet-cni/metrics.sock';

function scrape(socketPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path: '/metrics', timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}: ${body}`))));
    });
    req.on('timeout', () => req.destroy(new Error('scrape timed out')));
    req.on('error', reject);
  });
}

/** Value of one sample, e.g. sample(text, 'vnet_cni_operations_total{verb="ADD",result="ok"}'); undefined if absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

for (const mode of MODES) {
  t.test(`daemon metrics in ${mode} mode`, async (t) => {
    const lab = await Lab.up(defaultSpec(1, 4));
    t.teardown(() => lab.down());
    const daemon: ChildProcess = startChild(vmExecArgv(lab.names, 'vm1', [process.execPath, path.join(REPO, 'dist', 'control', 'cli', 'vnetctl.js'), 'daemon', '--socket', SOCKET]));
    t.teardown(() => stopChild(daemon));
    await waitForLine(daemon, /^READY /, 120_000, 'vnetctl daemon');
    const metricsPath = path.join(lab.vmPaths('vm1').run, path.basename(METRICS_SOCKET));
    const cni = new VmCni(lab, 'vm1', azureConflist({ cniVersion: '1.0.0', dataplane: mode, portmap: false, extra: { daemonSocket: SOCKET, maxPods: 2 } }));

    t.test('before any call: reconcile ran once, nothing served, empty pool', async (t) => {
      const m = await scrape(metricsPath);
      t.equal(sample(m, 'vnet_cni_reconcile_runs_total{result="ok"}'), 1);
      t.equal(sample(m, 'vnet_cni_reconcile_fixes_total{kind="removed"}'), 0);
      t.notOk(m.includes('vnet_cni_operations_total{'), 'no operation samples yet');
      t.equal(sample(m, 'vnet_cni_pool_addresses{state="size"}'), 0, 'no pool until the first ADD');
      const st = await lab.execVm('vm1', ['stat', '-c', '%a %U', METRICS_SOCKET]);
      t.equal(st.stdout.trim(), '600 root', 'the metrics socket is root-only');
    });

    t.test('ADD, ADD, ADD over maxPods, DEL, DEL of an unknown pod, CHECK: exact counts', async (t) => {
      const a = await cni.addPod('a');
      const b = await cni.addPod('b');
      const failed = await cni.addPod('c').then(() => undefined, (err: unknown) => err);
      t.ok(failed instanceof CniRunFailed, 'the third ADD fails');
      t.equal((failed as CniRunFailed).cniError?.code, 100, 'with CNI code 100 (maxPods reached)');
      await cni.del(a);
      await cni.del({ containerId: 'c-vm1-c', netns: lab.podNetns('vm1').find((n) => n.endsWith('-c'))!, ifName: 'eth0' });
      const check = await cni.check(b);
      t.equal(check.code, 0, 'CHECK of pod b passes', { stderr: check.stderr });

      const m = await scrape(metricsPath);
      t.equal(sample(m, 'vnet_cni_operations_total{verb="ADD",result="ok"}'), 2, 'ADD ok');
      t.equal(sample(m, 'vnet_cni_operations_total{verb="ADD",result="error"}'), 1, 'ADD error');
      t.equal(sample(m, 'vnet_cni_operations_total{verb="DEL",result="ok"}'), 2, 'DEL ok (the unknown pod too)');
      t.equal(sample(m, 'vnet_cni_operations_total{verb="CHECK",result="ok"}'), 1, 'CHECK ok');
      t.equal(sample(m, 'vnet_cni_operations_total{verb="DEL",result="error"}'), undefined, 'no failed DEL');
      t.equal(sample(m, 'vnet_cni_operation_errors_total{verb="ADD",code="100"}'), 1, 'the failure by CNI code');
      t.equal(sample(m, 'vnet_cni_ip_allocation_failures_total'), 1, 'one allocation failure');
      t.equal(sample(m, 'vnet_cni_operation_duration_seconds_count{verb="ADD",result="ok"}'), 2, 'two ADD latencies observed');
      t.equal(sample(m, 'vnet_cni_operation_duration_seconds_bucket{le="+Inf",verb="ADD",result="ok"}'), 2, 'histogram +Inf bucket');
      t.ok(sample(m, 'vnet_cni_operation_duration_seconds_sum{verb="ADD",result="ok"}')! > 0, 'latency sum');
      t.equal(sample(m, 'vnet_cni_pool_addresses{state="size"}'), 4);
      t.equal(sample(m, 'vnet_cni_pool_addresses{state="used"}'), 1);
      t.equal(sample(m, 'vnet_cni_pool_addresses{state="free"}'), 3);
      t.equal(sample(m, `vnet_cni_endpoints{mode="${mode}",phase="ready"}`), 1, 'one live endpoint');
      t.equal(sample(m, 'vnet_cni_metrics_source_errors_total{source="state"}'), undefined, 'the state was readable');

      const dbg = await lab.execVm('vm1', [path.join(REPO, 'bin', 'vnetctl'), 'debug', 'endpoints']);
      t.match(dbg.stdout, `control plane: daemon at ${SOCKET}`, 'vnetctl debug asks the daemon (DUMP)');
      t.match(dbg.stdout, new RegExp(`${b.ip.replaceAll('.', '\\.')}\\s+default/b`), 'and shows pod b');
      t.equal(sample(await scrape(metricsPath), 'vnet_cni_operations_total{verb="DUMP",result="ok"}'), 1, 'the DUMP is counted as well');

      if (mode === 'ebpf') {
        t.ok(await ping(b.netns, lab.internetIp), 'pod b pings the internet through SNAT');
        const after = await scrape(metricsPath);
        t.equal(sample(after, 'vnet_cni_nat_entries'), 1, 'one SNAT flow');
        t.equal(sample(after, 'vnet_cni_nat_allocation_failures_total'), 0);
        const counters = JSON.parse((await lab.execVm('vm1', [path.join(REPO, 'bin', 'vnetctl'), 'debug', 'counters', '--json'])).stdout) as { reason: string; packets: number }[];
        t.equal(counters.find((c) => c.reason === 'snat-new')?.packets, 1);
        for (const c of counters) {
          t.equal(sample(after, `vnet_cni_dataplane_packets_total{reason="${c.reason}"}`), c.packets, `${c.reason}: metrics = the kernel's counter`);
          if (c.reason.startsWith('drop-')) t.equal(sample(after, `vnet_cni_dataplane_drops_total{reason="${c.reason}"}`), c.packets);
        }
      } else {
        t.equal(sample(m, 'vnet_cni_nat_entries'), 0, 'iptables mode: no ebpf NAT table');
      }
      await cni.del(b);
    });
  });
}
