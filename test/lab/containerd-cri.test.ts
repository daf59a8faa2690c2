// The kubelet path: pod sandboxes made by containerd's CRI plugin (lab/containerd.ts)
// through the project's own CRI v1 client (lab/cri.ts), with the node's
// conflist (daemon + native shim) in each lab VM, one containerd per VM.
// The connectivity matrix runs on those pods; a containerd restart during a
// storm of sandboxes leaves no leaked IP and no duplicate.
import t from 'tap';
import path from 'node:path';
import { readFileSync, existsSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { startWhoami, tcpWhoami, tcpWhoamiDetail, ping, type ToolServer } from '../../lab/tools/net.js';
import { startChild, stopChild, waitForLine, sleep } from '../../lab/children.js';
import { Containerd } from '../../lab/containerd.js';
import type { PodSandboxConfig } from '../../lab/cri.js';
import { MODES, REPO, SHIM_DIR, VmCni, azureConflist } from './helpers/cni-harness.js';
import { haveBinaries } from './helpers/runtimes.js';

const PORT = 8080;
const SOCKET = '/run/vnet-cni/daemon.sock';
const STORM = 20;

interface Pod {
  id: string;
  ip: string;
  /** /proc/<pause pid>/ns/net: the sandbox's netns as the machine sees it */
  netns: string;
  pid: number;
}

const skip = haveBinaries('containerd', 'ctr', 'runc') || (existsSync(path.join(SHIM_DIR, 'cni-shim')) ? false : 'shim not built');

for (const mode of MODES) {
  t.test(`containerd CRI sandboxes on the VNet, ${mode} mode`, { skip }, async (t) => {
    const lab = await Lab.up(defaultSpec(2, 30));
    const vms = ['vm1', 'vm2'] as const;
    const ctd: Record<string, Containerd> = {};
    const daemons: ChildProcess[] = [];
    const servers: ToolServer[] = [];
    t.teardown(async () => {
      for (const s of servers) await s.stop();
      for (const c of Object.values(ctd)) await c.stop();
      for (const d of daemons) await stopChild(d);
      await lab.down();
    });
    const cni: Record<string, VmCni> = {};
    for (const vm of vms) {
      // The node's conflist: daemon socket, the mode, on-prem not SNATed; portmap chained for hostPorts.
      cni[vm] = new VmCni(lab, vm, azureConflist({ cniVersion: '1.0.0', dataplane: mode, extra: { daemonSocket: SOCKET, vnetCidrs: ['172.16.1.0/24'] } }));
      ctd[vm] = await Containerd.start(lab, vm, { cniBins: { 'azure-vnet': path.join(SHIM_DIR, 'azure-vnet'), 'azure-vnet-ipam': path.join(SHIM_DIR, 'azure-vnet-ipam') } });
      const daemon = startChild(ctd[vm].inVm([process.execPath, path.join(REPO, 'dist', 'control', 'cli', 'vnetctl.js'), 'daemon', '--socket', SOCKET]));
      daemons.push(daemon);
      await waitForLine(daemon, /^READY /, 30_000, `daemon in ${vm}`);
    }
    const version = await ctd.vm1!.cri.version();
    t.match(version, { runtime_name: 'containerd', runtime_api_version: 'v1' }, `CRI ${version.runtime_version}`);

    const config = (vm: string, name: string, extra: Partial<PodSandboxConfig> = {}): PodSandboxConfig => ({
      metadata: { name, namespace: 'team-a', uid: `uid-${name}`, attempt: 0 },
      hostname: name,
      linux: { cgroup_parent: ctd[vm]!.cgroupParent },
      dns_config: { servers: ['10.0.0.10'], searches: ['team-a.svc.cluster.local'], options: ['ndots:5'] },
      labels: { app: name },
      ...extra,
    });
    const run = async (vm: string, name: string, extra: Partial<PodSandboxConfig> = {}): Promise<Pod> => {
      const c = ctd[vm]!;
      const id = await c.cri.runPodSandbox(config(vm, name, extra));
      const st = await c.cri.podSandboxStatus(id, true);
      const pid = (JSON.parse(st.info.info ?? '{}') as { pid?: number }).pid ?? 0;
      return { id, ip: st.status.network?.ip ?? '', netns: `/proc/${pid}/ns/net`, pid };
    };

    const a = await run('vm1', 'a');
    const b = await run('vm1', 'b');
    const c = await run('vm2', 'c');
    const vm1 = lab.vmInfo('vm1');
    const vm2 = lab.vmInfo('vm2');

    t.test('RunPodSandbox gives ready sandboxes with VNet IPs, named in the store', async (t) => {
      t.ok(vm1.secondaryIps.includes(a.ip) && vm1.secondaryIps.includes(b.ip) && a.ip !== b.ip, `vm1 sandboxes: ${a.ip}, ${b.ip}`);
      t.ok(vm2.secondaryIps.includes(c.ip), `vm2 sandbox: ${c.ip}`);
      const st = await ctd.vm1!.cri.podSandboxStatus(a.id);
      t.match(st.status, { state: 'SANDBOX_READY', metadata: { name: 'a', namespace: 'team-a', uid: 'uid-a' } }, 'status: ready, metadata kept');
      const ep = cni.vm1!.state().endpoints[`${a.id}/eth0`];
      t.match(ep, { ip: a.ip, podName: 'a', podNamespace: 'team-a', phase: 'ready' }, 'the store knows the sandbox by its id, with the pod name and namespace containerd passed in CNI_ARGS');
      t.match((await ctd.vm1!.cri.listPodSandbox()).map((s) => s.metadata.name).sort(), ['a', 'b'], 'ListPodSandbox');
      const resolv = readFileSync(`/proc/${a.pid}/root/etc/resolv.conf`, 'utf8');
      t.match(resolv, /nameserver 10\.0\.0\.10/, 'the sandbox has the DNS config');
      t.match(resolv, /search team-a\.svc\.cluster\.local/);
    });

    for (const [p, name] of [[a, 'a'], [b, 'b'], [c, 'c']] as const) servers.push(await startWhoami(p.netns, PORT, { name }));
    servers.push(await startWhoami(vm2.netns, PORT, { name: 'vm2' }));
    servers.push(await startWhoami(lab.internetNs, PORT, { name: 'internet' }));
    servers.push(await startWhoami(lab.onpremNs, PORT, { name: 'onprem' }));

    t.test('pod to pod, same VM and across VMs', async (t) => {
      t.ok(await ping(a.netns, b.ip), 'ping a -> b');
      t.equal(await tcpWhoami(a.netns, b.ip, PORT), a.ip, 'b sees a by its pod IP');
      t.equal(await tcpWhoami(a.netns, c.ip, PORT), a.ip, 'c (vm2) sees a by its pod IP');
      t.equal(await tcpWhoami(c.netns, a.ip, PORT), c.ip, 'a sees c by its pod IP');
      t.equal(await tcpWhoami(a.netns, vm2.primaryIp, PORT), a.ip, 'the other VM sees the pod IP');
    });
    t.test('internet as the VM public IP, on-prem without NAT', async (t) => {
      t.equal(await tcpWhoami(a.netns, lab.internetIp, PORT), vm1.publicIp, 'internet host sees vm1 public IP');
      t.equal(await tcpWhoami(c.netns, lab.internetIp, PORT), vm2.publicIp, 'and vm2 public IP from vm2');
      t.equal(await tcpWhoami(a.netns, lab.onpremIp, PORT), a.ip, 'on-prem sees the pod IP');
      t.equal(await tcpWhoami(lab.onpremNs, a.ip, PORT), lab.onpremIp, 'the pod sees the on-prem IP');
    });
    t.test('hostPort from the sandbox port mappings', async (t) => {
      const d = await run('vm1', 'd', { port_mappings: [{ protocol: 'TCP', container_port: PORT, host_port: 18080 }] });
      servers.push(await startWhoami(d.netns, PORT, { name: 'd' }));
      t.equal((await tcpWhoamiDetail(vm2.netns, vm1.primaryIp, 18080)).name, 'd', 'vm1:18080 reaches sandbox d');
      await ctd.vm1!.cri.stopPodSandbox(d.id);
      await ctd.vm1!.cri.removePodSandbox(d.id);
      await t.rejects(tcpWhoamiDetail(vm2.netns, vm1.primaryIp, 18080, { timeoutMs: 1500 }), 'hostPort gone once the sandbox is stopped');
      t.notOk(cni.vm1!.state().endpoints[`${d.id}/eth0`], 'its endpoint is gone');
    });

    t.test(`a containerd restart during a storm of ${STORM} sandboxes: no leaked IP, no duplicate`, async (t) => {
      const c1 = ctd.vm1!;
      let done = 0;
      const started = Array.from({ length: STORM }, (_, i) =>
        c1.cri.runPodSandbox(config('vm1', `storm-${i}`)).then((id) => ({ id }), (err: unknown) => ({ err: String(err) })).finally(() => { done++; }));
      // Restart once some sandboxes are up and the rest are in flight (bounded wait).
      for (let i = 0; i < 1200 && done < STORM / 4; i++) await sleep(50);
      await c1.restart();
      const outcomes = await Promise.all(started);
      t.comment(`${outcomes.filter((o) => 'id' in o).length} RunPodSandbox calls succeeded, ${outcomes.filter((o) => 'err' in o).length} were cut off by the restart`);

      const listed = await c1.cri.listPodSandbox();
      const ready = listed.filter((s) => s.state === 'SANDBOX_READY');
      const ips = new Map<string, string>();
      for (const s of ready) ips.set(s.id, (await c1.cri.podSandboxStatus(s.id)).status.network?.ip ?? '');
      t.equal(new Set(ips.values()).size, ips.size, 'every ready sandbox has its own IP');
      const state = cni.vm1!.state();
      for (const [id, ip] of ips) t.equal(state.endpoints[`${id}/eth0`]?.ip, ip, `sandbox ${id.slice(0, 12)}: the store holds ${ip} for it`);
      const stored = Object.values(state.endpoints).map((e) => e.ip);
      t.equal(new Set(stored).size, stored.length, 'no IP held twice in the store');

      // What kubelet does next: stop and remove every sandbox it does not want (here: all the storm's, ready or not).
      for (const s of listed) {
        if (!s.metadata.name.startsWith('storm-')) continue;
        await c1.cri.stopPodSandbox(s.id);
        await c1.cri.removePodSandbox(s.id);
      }
      const left = Object.values(cni.vm1!.state().endpoints).map((e) => e.ip).sort();
      t.same(left, [a.ip, b.ip].sort(), 'only a and b hold endpoints: nothing leaked');
      const ipam = cni.vm1!.state().ipam as { holdings: Record<string, { ip: string }> };
      t.same(Object.values(ipam.holdings).map((h) => h.ip).sort(), [a.ip, b.ip].sort(), 'and only their IPs are allocated');
      t.equal(await tcpWhoami(a.netns, b.ip, PORT), a.ip, 'a and b still talk after the restart');
    });

    t.test('StopPodSandbox + RemovePodSandbox free the IP', async (t) => {
      await ctd.vm1!.cri.stopPodSandbox(b.id);
      await ctd.vm1!.cri.removePodSandbox(b.id);
      t.notOk(cni.vm1!.state().endpoints[`${b.id}/eth0`], 'b\'s endpoint is gone');
      t.notOk(await ping(a.netns, b.ip, { timeoutSec: 1 }), 'b is unreachable');
    });
  });
}
