// What only the ebpf dataplane has: programs attached where expected, maps
// that hold exactly the live endpoints, the mode switch, a clear error (or an
// opted-in fallback) when the kernel lacks something, and established flows
// that survive a kill -9 of the control plane.
import t from 'tap';
import path from 'node:path';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { startChild, stopChild, waitForLine } from '../../lab/children.js';
import { vmExecArgv } from '../../lab/vm-exec.js';
import { ping } from '../../lab/tools/net.js';
import { REPO, VmCni, azureConflist, execPlugin, pluginStdin, type PodHandle } from './helpers/cni-harness.js';

interface BpftoolNetDev { devname: string; ifindex: number; kind: string; name: string; prog_id?: number; id?: number }

t.test('ebpf dataplane specifics', async (t) => {
  const lab = await Lab.up(defaultSpec(1, 12));
  t.teardown(() => lab.down());
  const ebpf = new VmCni(lab, 'vm1', azureConflist({ cniVersion: '1.0.0', dataplane: 'ebpf' }));
  const vm = lab.vmInfo('vm1');

  const attached = async (): Promise<BpftoolNetDev[]> => {
    const res = await lab.execVm('vm1', ['bpftool', '-j', 'net', 'show']);
    const parsed = JSON.parse(res.stdout) as { tc?: BpftoolNetDev[] }[];
    // bpftool prints a program as "<name>:[<id>]".
    return parsed.flatMap((x) => x.tc ?? []).map((h) => ({ ...h, name: h.name.replace(/:\[\d+\]$/, '') }));
  };
  const mapEndpoints = async (): Promise<string[]> => {
    const { EbpfPrograms } = await import('../../control/dataplane/ebpf/programs.js');
    // Read the pinned map from inside the VM (its bpffs), as the debug view would.
    const script = `import(${JSON.stringify(path.join(REPO, 'dist/control/dataplane/ebpf/programs.js'))}).then(async (m) => {
      const fs = await import('node:fs'); const root = '/sys/fs/bpf/vnet-cni/' + fs.readdirSync('/sys/fs/bpf/vnet-cni')[0];
      const p = await m.EbpfPrograms.open(root); console.log(JSON.stringify((await p.listEndpoints()).map((e) => e.ip))); p.close(); })`;
    void EbpfPrograms;
    const res = await lab.execVm('vm1', [process.execPath, '-e', script]);
    return (JSON.parse(res.stdout.trim() || '[]') as string[]).sort();
  };

  t.test('programs are attached where expected and maps hold exactly the live endpoints', async (t) => {
    const pods: PodHandle[] = [];
    t.teardown(async () => {
      for (const p of pods) await ebpf.del(p).catch(() => {});
    });
    for (let i = 0; i < 6; i++) pods.push(await ebpf.addPod(`m${i}`));
    for (const p of pods.splice(1, 3)) await ebpf.del(p); // churn: delete three in the middle
    pods.push(await ebpf.addPod('m6'));
    const hooks = await attached();
    t.ok(hooks.some((h) => h.devname.startsWith('eth0') && /ingress/.test(h.kind) && h.name === 'from_nic'), 'from_nic on eth0 ingress');
    t.ok(hooks.some((h) => h.devname.startsWith('eth0') && /egress/.test(h.kind) && h.name === 'to_nic'), 'to_nic on eth0 egress');
    const st = ebpf.state();
    for (const rec of Object.values(st.endpoints)) {
      t.ok(hooks.some((h) => h.devname.startsWith(rec.hostVeth) && /ingress/.test(h.kind) && h.name === 'from_pod'), `from_pod on ${rec.hostVeth}`);
    }
    t.same(await mapEndpoints(), pods.map((p) => p.ip).sort(), 'the endpoint map holds exactly the live pods');
    for (const p of pods.splice(0)) await ebpf.del(p);
    t.same(await attached(), [], 'the last DEL detaches everything');
  });

  t.test('a missing kernel feature fails ADD naming it, and falls back only when asked', async (t) => {
    const netns = await lab.addPodNetns('vm1', 'nobpf');
    const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'nobpf', CNI_NETNS: netns, CNI_IFNAME: 'eth0' };
    // A pin root that is not on a bpffs stands for a node without bpffs mounted.
    const noBpffs = { bpfRoot: '/var/lib/vnet-cni/not-bpffs' };
    const failed = await execPlugin(lab, 'vm1', env, pluginStdin(azureConflist({ cniVersion: '1.0.0', dataplane: 'ebpf', extra: noBpffs })));
    t.equal(failed.json?.code, 101, `code 101: ${String(failed.json?.msg)}`);
    t.match(String(failed.json?.msg), /bpffs/, 'the message names bpffs');
    const fallback = await execPlugin(lab, 'vm1', env, pluginStdin(azureConflist({ cniVersion: '1.0.0', dataplane: 'ebpf', extra: { ...noBpffs, dataplaneFallback: true } })));
    t.equal(fallback.code, 0, 'with dataplaneFallback the pod comes up');
    const links = await lab.execVm('vm1', ['ip', '-o', 'link', 'show', 'azure0']);
    t.equal(links.code, 0, 'in iptables mode (the bridge exists)');
    await execPlugin(lab, 'vm1', { ...env, CNI_COMMAND: 'DEL' }, pluginStdin(azureConflist({ cniVersion: '1.0.0', dataplane: 'ebpf', extra: { ...noBpffs, dataplaneFallback: true } })));
  });

  t.test('switching a node between modes cleans up the other mode', async (t) => {
    const ipt = new VmCni(lab, 'vm1', azureConflist({ cniVersion: '1.0.0' }), 'ipt.conflist');
    const a = await ipt.addPod('sw1');
    t.equal((await lab.execVm('vm1', ['ip', 'link', 'show', 'azure0'])).code, 0, 'iptables mode: bridge up');
    const refused = await ebpf.addPod('sw2').then(() => 'added', (err: Error) => err.message);
    t.match(refused, /drain the node/, 'switching with pods in the old mode is refused with a clear error');
    await ipt.del(a);
    const b = await ebpf.addPod('sw3');
    t.not((await lab.execVm('vm1', ['ip', 'link', 'show', 'azure0'])).code, 0, 'ebpf mode: the bridge is gone');
    const rules = await lab.execVm('vm1', ['sh', '-c', 'iptables-save | grep -c VNET- ; ebtables -t nat -L | grep -c VNET-']);
    t.same(rules.stdout.trim().split('\n'), ['0', '0'], 'ebpf mode: no iptables/ebtables rules of ours');
    t.ok(await ping(b.netns, vm.primaryIp), 'the ebpf pod works');
    await ebpf.del(b);
    const c = await ipt.addPod('sw4');
    t.same(await attached(), [], 'back to iptables: no programs attached');
    t.ok(await ping(c.netns, vm.primaryIp), 'the iptables pod works');
    await ipt.del(c);
  });

  t.test('an established TCP flow through SNAT survives kill -9 of the daemon', async (t) => {
    const sock = '/run/vnet-cni/daemon.sock';
    const viaDaemon = new VmCni(lab, 'vm1', azureConflist({ cniVersion: '1.0.0', dataplane: 'ebpf', extra: { daemonSocket: sock } }), 'daemon.conflist');
    const startDaemon = async () => {
      const child = startChild(vmExecArgv(lab.names, 'vm1', [process.execPath, path.join(REPO, 'dist/control/cli/vnetctl.js'), 'daemon', '--socket', sock]));
      await waitForLine(child, /^READY /, 120_000, 'daemon');
      return child;
    };
    let daemon = await startDaemon();
    t.teardown(() => stopChild(daemon));
    const pod = await viaDaemon.addPod('flow');
    const echo = startChild(['ip', 'netns', 'exec', lab.internetNs, 'socat', 'TCP-LISTEN:9000,reuseaddr,fork', 'EXEC:cat']);
    t.teardown(() => stopChild(echo));
    for (let i = 0; i < 50; i++) {
      const up = await lab.execNs(lab.internetNs, ['sh', '-c', 'ss -ltn | grep -q ":9000 "']);
      if (up.code === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    // A client that sends a numbered line every 100 ms for 6 s and checks every echo.
    const client = startChild(['nsenter', `--net=${pod.netns}`, '--', process.execPath, '-e', `
      const s = require('net').createConnection(9000, ${JSON.stringify(lab.internetIp)});
      let sent = 0, got = '', ok = 0;
      s.on('connect', () => { console.log('CONNECTED'); const iv = setInterval(() => { s.write((sent++) + '\\n'); if (sent === 60) { clearInterval(iv); setTimeout(() => { console.log('RESULT ' + ok + '/' + sent); process.exit(0); }, 500); } }, 100); });
      s.on('data', (d) => { got += d; const lines = got.split('\\n'); got = lines.pop(); ok += lines.length; });
      s.on('error', (e) => { console.log('RESULT error ' + e.code); process.exit(1); });`]);
    await waitForLine(client, /^CONNECTED/, 60_000, 'flow client');
    const result = waitForLine(client, /^RESULT (.*)$/, 60_000, 'flow client');
    await new Promise((r) => setTimeout(r, 1500));
    daemon.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 1500));
    daemon = await startDaemon();
    const [, outcome] = await result;
    t.equal(outcome, '60/60', 'every echo came back across the kill and restart');
    await viaDaemon.del(pod);
  });
});
