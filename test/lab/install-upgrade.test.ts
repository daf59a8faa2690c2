// The cluster install, as far as it runs without a cluster: the image's tree
// is staged and its installer run (scripts/check-image.sh), each lab
// VM gets the shipped conflist of the mode byte for byte, and the daemon runs
// with the DaemonSet's own command line (read from the manifest). Then, per
// dataplane: the readiness probe's command says not ready / ready, pods come
// up through libcni with that conflist, and an upgrade (each VM's daemon
// stopped, a new one started: ebpf programs reloaded over the pinned maps,
// iptables rules re-applied) keeps established TCP connections, pod ->
// internet through SNAT and pod -> pod across VMs, carrying data.
import t from 'tap';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { loadAllYaml, type V1DaemonSet } from '@kubernetes/client-node';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { startChild, stopChild, waitForLine } from '../../lab/children.js';
import { vmExecArgv } from '../../lab/vm-exec.js';
import { run } from '../../control/exec.js';
import { ping } from '../../lab/tools/net.js';
import { CNICLIENT, MODES, REPO, VM_CACHE_DIR } from './helpers/cni-harness.js';
import { StandinProc, VM_KUBECONFIG } from './helpers/kube-standin-proc.js';

const IMAGE_ROOT = '/vnet-cni';
const dsDoc = (loadAllYaml(readFileSync(path.join(REPO, 'docker', 'manifests', 'daemonset.yaml'), 'utf8')) as V1DaemonSet[])[0]!;
const daemonSpec = dsDoc.spec!.template.spec!.containers.find((c) => c.name === 'daemon')!;

/** A manifest command with the image's paths mapped onto this install and $(VAR)s filled in. */
function fromManifest(argv: string[], binDir: string, vars: Record<string, string>): string[] {
  return argv.map((a) => a.replace(`${IMAGE_ROOT}/bin/`, `${binDir}/`).replace(/\$\((\w+)\)/g, (_, v: string) => vars[v] ?? `$(${v})`));
}

t.test('cluster install and upgrade without dropping flows', async (t) => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'vnet-install-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  // The image's runtime tree staged from the Dockerfile's COPY lines, its initContainer entrypoint
  // (docker/node-install.sh -> install-cni-plugin.sh) run against it, its commands and apt names checked.
  const check = await run(['bash', path.join(REPO, 'scripts', 'check-image.sh'), '--out', tmp, 'ebpf'], { timeoutMs: 900_000 });
  t.equal(check.code, 0, `scripts/check-image.sh ebpf\n${check.stdout}${check.stderr}`);
  t.match(check.stdout, /check-image: ebpf: plugins VERSION ok/, 'the installed plugins answer VERSION');
  t.match(check.stdout, /apt packages exist|apt check SKIPPED: no apt package lists/, 'every apt package of the Dockerfile exists (when apt has lists)');
  t.match(check.stdout, /^check-image: ok$/m);
  const binDir = path.join(tmp, 'host-ebpf', 'opt', 'cni', 'bin');
  const cniPath = `${binDir}:/usr/lib/cni`;

  for (const mode of MODES) {
    t.test(`${mode} dataplane`, async (t) => {
      const lab = await Lab.up(defaultSpec(2, 8));
      t.teardown(() => lab.down());
      const vms = ['vm1', 'vm2'];
      const conflist = path.join(REPO, 'docker', 'conflists', `10-azure-${mode}.conflist`);
      for (const vm of vms) copyFileSync(conflist, path.join(lab.vmPaths(vm).cniConf, '10-azure.conflist'));
      const cni = async (vm: string, verb: string, flags: string[]): Promise<string> => {
        const res = await lab.execVm(vm, [CNICLIENT, verb, '--conflist', '/etc/cni/net.d/10-azure.conflist', '--cni-path', cniPath, '--cache-dir', VM_CACHE_DIR, ...flags], { env: { CNI_PATH: cniPath }, timeoutMs: 180_000 });
        if (res.code !== 0) throw new Error(`cniclient ${verb} in ${vm}: ${res.stderr.trim() || res.stdout.trim()}`);
        return res.stdout;
      };
      const probe = (vm: string, which: 'readinessProbe' | 'livenessProbe') =>
        lab.execVm(vm, fromManifest(daemonSpec[which]?.exec?.command ?? [], binDir, {}), { timeoutMs: 60_000 });
      // The DaemonSet's daemon talks to the API server (in-cluster credentials there); here each VM gets the
      // stand-in API server on its own loopback, with its Node object, and the daemon its kubeconfig.
      for (const vm of vms) {
        const api = await StandinProc.start(lab, vm);
        t.teardown(() => api.stop());
        await api.put({ apiVersion: 'v1', kind: 'Node', metadata: { name: vm }, spec: {}, status: { conditions: [] } });
      }
      const daemons = new Map<string, ChildProcess>();
      const startDaemon = async (vm: string): Promise<void> => {
        const argv = [...fromManifest(daemonSpec.command as string[], binDir, { NODE_NAME: vm, VNET_LOG_LEVEL: 'info' }), '--kubeconfig', VM_KUBECONFIG];
        const child = startChild(vmExecArgv(lab.names, vm, argv));
        await waitForLine(child, /^READY /, 120_000, `daemon in ${vm}`);
        daemons.set(vm, child);
      };
      t.teardown(async () => {
        for (const d of daemons.values()) await stopChild(d);
      });

      const notReady = await probe('vm1', 'readinessProbe');
      t.equal(notReady.code, 1, 'readiness probe fails before the daemon runs');
      t.match(notReady.stderr, /^not ready: daemon socket \/run\/vnet-cni\/daemon.sock: .*(ENOENT|ECONNREFUSED)/, `with the reason: ${notReady.stderr.trim()}`);
      for (const vm of vms) await startDaemon(vm);
      const ready = await probe('vm1', 'readinessProbe');
      t.equal(ready.code, 0, `readiness probe passes with the daemon up: ${ready.stdout.trim()}${ready.stderr.trim()}`);
      t.equal((await probe('vm1', 'livenessProbe')).code, 0, 'liveness probe passes');

      // Pods through libcni with the shipped conflist; the daemons do the work.
      const pods: Record<string, { netns: string; ip: string; cid: string }> = {};
      for (const [vm, name] of [['vm1', 'a'], ['vm2', 'b']] as const) {
        const netns = await lab.addPodNetns(vm, name);
        const cid = `c-${vm}-${name}`;
        const out = JSON.parse(await cni(vm, 'add', ['--container', cid, '--netns', netns, '--ifname', 'eth0', '--args', `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${name}`])) as { ips: { address: string }[] };
        pods[name] = { netns, ip: out.ips[0]!.address.split('/')[0]!, cid };
      }
      const a = pods.a!;
      const b = pods.b!;
      t.match(readFileSync(path.join(lab.vmPaths('vm1').log, 'vnet-cni-daemon.log'), 'utf8'), /"containerId":"c-vm1-a".*endpoint added/, 'the ADD went through the daemon');

      // Echo servers: the internet host (reached through SNAT) and pod b on vm2.
      const servers = [
        startChild(['ip', 'netns', 'exec', lab.internetNs, 'socat', 'TCP-LISTEN:9000,reuseaddr,fork', 'EXEC:cat']),
        startChild(['nsenter', `--net=${b.netns}`, '--', 'socat', 'TCP-LISTEN:9001,reuseaddr,fork', 'EXEC:cat']),
      ];
      t.teardown(async () => {
        for (const s of servers) await stopChild(s);
      });
      for (const [ns, port] of [[lab.internetNs, 9000], [b.netns, 9001]] as const) {
        for (let i = 0; i < 50; i++) {
          if ((await run(['nsenter', `--net=${ns.startsWith('/') ? ns : `/run/netns/${ns}`}`, '--', 'sh', '-c', `ss -ltn | grep -q ":${port} "`])).code === 0) break;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      // One client in pod a, two connections; a numbered line every 100 ms on each, every echo checked,
      // until "stop" arrives on stdin (bounded: 600 lines at most).
      const client = startChild(['nsenter', `--net=${a.netns}`, '--', process.execPath, '-e', `
        const net = require('net');
        const flows = [['inet', ${JSON.stringify(lab.internetIp)}, 9000], ['pod', ${JSON.stringify(b.ip)}, 9001]].map(([name, host, port]) => {
          const f = { name, sent: 0, ok: 0, err: '', buf: '', s: net.createConnection(port, host) };
          f.s.on('connect', () => { f.up = true; if (flows.every((x) => x.up)) console.log('CONNECTED'); });
          f.s.on('data', (d) => { f.buf += d; const l = f.buf.split('\\n'); f.buf = l.pop(); for (const n of l) if (Number(n) === f.ok) f.ok++; });
          f.s.on('error', (e) => { f.err = e.code; });
          return f;
        });
        let stopping = false;
        const iv = setInterval(() => { for (const f of flows) if (f.up && !f.err && f.sent < 600) f.s.write((f.sent++) + '\\n'); }, 100);
        const done = () => { clearInterval(iv); setTimeout(() => { console.log('RESULT ' + flows.map((f) => f.name + ' ' + f.ok + '/' + f.sent + (f.err ? ' ' + f.err : '')).join(', ')); process.exit(0); }, 1000); };
        process.stdin.on('data', (d) => { if (!stopping && String(d).includes('stop')) { stopping = true; done(); } });
        setTimeout(done, 90000);`]);
      t.teardown(() => stopChild(client));
      await waitForLine(client, /^CONNECTED/, 60_000, 'flow client');
      const result = waitForLine(client, /^RESULT (.*)$/, 120_000, 'flow client');
      await new Promise((r) => setTimeout(r, 1000));

      const kernelState = async (vm: string): Promise<string> => {
        if (mode === 'ebpf') {
          const progs = await lab.execVm(vm, ['bpftool', '-j', 'net', 'show']);
          const maps = await lab.execVm(vm, ['sh', '-c', 'for m in /sys/fs/bpf/vnet-cni/*/maps/vnet_endpoints; do bpftool -j map show pinned $m; done']);
          const tc = (JSON.parse(progs.stdout) as { tc?: { devname: string; kind: string; id?: number; prog_id?: number }[] }[]).flatMap((x) => x.tc ?? []);
          const ids = tc.map((h) => `${h.devname}/${h.kind}:${h.prog_id ?? h.id}`).join(',');
          const mapId = /"id":(\d+)/.exec(maps.stdout)?.[1];
          return `progs ${ids} endpoint-map ${mapId}`;
        }
        const rules = await lab.execVm(vm, ['sh', '-c', 'iptables-save | grep -c "vnet-cni"; ebtables -t nat -L | grep -c -- "-j"']);
        return `rules ${rules.stdout.trim().split('\n').join('/')}`;
      };
      // The upgrade, one VM after the other (a rolling update): stop the daemon, start a new one.
      for (const vm of vms) {
        const before = await kernelState(vm);
        await stopChild(daemons.get(vm)!);
        daemons.delete(vm);
        await new Promise((r) => setTimeout(r, 500)); // the kernel alone carries the flows meanwhile
        await startDaemon(vm);
        const after = await kernelState(vm);
        if (mode === 'ebpf') {
          const [pb, mb] = [before.split(' ')[1], before.split(' ')[3]];
          const [pa, ma] = [after.split(' ')[1], after.split(' ')[3]];
          const hooks = (list: string) => list.split(',').map((h) => h.split(':')[0]);
          const ids = (list: string) => new Set(list.split(',').map((h) => h.split(':')[1]));
          t.same(hooks(pa!), hooks(pb!), `${vm}: the same hooks carry our programs (${hooks(pb!).join(', ')})`);
          t.same([...ids(pa!)].filter((id) => ids(pb!).has(id)), [], `${vm}: every program was replaced, NIC and pod veths (${pb} -> ${pa})`);
          t.equal(ma, mb, `${vm}: the endpoint map was kept (id ${mb})`);
        } else {
          t.equal(after, before, `${vm}: the rules were re-applied without duplicates (${after})`);
        }
        t.match(readFileSync(path.join(lab.vmPaths(vm).log, 'vnet-cni-daemon.log'), 'utf8'), /node dataplane re-installed in place/, `${vm}: the new daemon re-installed the dataplane`);
      }
      await new Promise((r) => setTimeout(r, 1500)); // data on the same connections after the upgrade
      client.stdin!.write('stop\n');
      const [, outcome] = await result;
      const flows = Object.fromEntries(outcome!.split(', ').map((f): [string, string] => [f.split(' ')[0] ?? '', f.split(' ').slice(1).join(' ')]));
      t.match(flows.inet, /^(\d+)\/\1$/, `pod -> internet through SNAT: every echo came back (${flows.inet})`);
      t.match(flows.pod, /^(\d+)\/\1$/, `pod -> pod across VMs: every echo came back (${flows.pod})`);
      t.ok(Number(flows.inet!.split('/')[0]) >= 30, 'the flows carried data before, during and after the upgrade');

      t.ok(await ping(a.netns, b.ip), 'new traffic after the upgrade');
      t.equal((await probe('vm1', 'readinessProbe')).code, 0, 'ready after the upgrade');
      await cni('vm1', 'del', ['--container', a.cid, '--netns', a.netns, '--ifname', 'eth0']);
      await cni('vm2', 'del', ['--container', b.cid, '--netns', b.netns, '--ifname', 'eth0']);
      const state = JSON.parse(readFileSync(path.join(lab.vmPaths('vm1').varLib, 'state.json'), 'utf8')) as { endpoints: object };
      t.same(state.endpoints, {}, 'DEL through the installed plugin cleans up');
    });
  }
});
