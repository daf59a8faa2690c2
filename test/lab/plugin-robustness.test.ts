// State survives kill -9 between any two steps of ADD and DEL, and a rerun or
// GC converges with no leaked IP, link or rule; concurrent pods on one VM (48,
// 32 in flight; the full form, VNET_FAULTS_FULL=1, fills a VM's 250) give no
// duplicate IP. Runs once per dataplane, and in each lab for mode bridge then
// mode transparent (the node drains in between); the concurrent round is full
// size in bridge mode and a burst of 8 pods in transparent mode, whose per-pod
// path has no shared bridge or rule to race on. The same crash points run
// in-process, in seconds, in test/unit/agent-crash.test.ts; this is the real
// kernel and real SIGKILLs (through the test-only plugin entry).
import t from 'tap';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { ping } from '../../lab/tools/net.js';
import { MODES, NET_MODES, VmCni, azureConflist, execFaultyPlugin, execPlugin, pluginStdin, type PodHandle } from './helpers/cni-harness.js';

const ADD_POINTS = ['add:after-intent', 'add:after-veth', 'add:after-pod-config', 'add:after-attach'];
const DEL_POINTS = ['del:after-mark', 'del:after-detach', 'del:after-veth'];
const POD_COUNT = Number(process.env.VNET_TEST_PODS ?? (process.env.VNET_FAULTS_FULL === '1' ? 250 : 48));
const IN_FLIGHT = Number(process.env.VNET_TEST_IN_FLIGHT ?? 32);
/** Mode transparent's concurrent round: its per-pod path shares no bridge or rule, so a short burst covers it (CI time). */
const TRANSPARENT_PODS = 8;

async function inParallel<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  });
  await Promise.all(workers);
  return out;
}

for (const mode of MODES) {
  t.test(`robustness in ${mode} mode`, async (t) => {
    const lab = await Lab.up(defaultSpec(1, POD_COUNT));
    t.teardown(() => lab.down());
    const vm = lab.vmInfo('vm1');
    for (const netMode of NET_MODES) t.test(`mode ${netMode}`, async (t) => {
      const conflist = azureConflist({ cniVersion: '1.1.0', dataplane: mode, mode: netMode, portmap: false });
      const stdin = pluginStdin(conflist);
      const cni = new VmCni(lab, 'vm1', azureConflist({ cniVersion: '1.0.0', dataplane: mode, mode: netMode }));
      const px = netMode === 'bridge' ? '' : 't'; // pod netns names stay unique across the modes
      const podCount = netMode === 'bridge' ? POD_COUNT : Math.min(POD_COUNT, TRANSPARENT_PODS);

      // Crashes go through the test-only plugin entry (test/support/faulty-plugin.ts); reruns through the real bin/azure-vnet.
      const plugin = (command: string, containerId: string, netns: string, extraEnv: Record<string, string> = {}, input = stdin) =>
        (extraEnv.VNET_CNI_TEST_CRASH_AT ? execFaultyPlugin : execPlugin)(lab, 'vm1', { CNI_COMMAND: command, CNI_CONTAINERID: containerId, CNI_NETNS: netns, CNI_IFNAME: 'eth0', ...extraEnv }, input);
      const leftovers = async (): Promise<{ veths: string[]; used: number; endpoints: number; bridge: boolean }> => {
        const links = await lab.execVm('vm1', ['ip', '-o', 'link', 'show']);
        const state = cni.state() as unknown as { endpoints: object; ipam: unknown };
        const { poolSummary } = await import('../../control/ipam/allocator.js');
        return {
          veths: [...links.stdout.matchAll(/azv[0-9a-f]{12}/g)].map((m) => m[0]),
          used: poolSummary(state.ipam as never).used,
          endpoints: Object.keys(state.endpoints).length,
          bridge: /azure0/.test(links.stdout),
        };
      };

      t.test('kill -9 between any two steps of ADD: a rerun converges to the same IP', async (t) => {
        for (const point of ADD_POINTS) {
          const netns = await lab.addPodNetns('vm1', `${px}k${ADD_POINTS.indexOf(point)}`);
          const id = `${px}crash-${point.replace(/\W/g, '-')}`;
          const crashed = await plugin('ADD', id, netns, { VNET_CNI_TEST_CRASH_AT: point });
          t.not(crashed.code, 0, `${point}: the plugin died`);
          t.equal(crashed.stdout, '', `${point}: nothing printed`);
          const recorded = Object.values(cni.state().endpoints).find((e) => e.ip && e.phase === 'creating');
          t.ok(recorded, `${point}: the intent survived the crash`);
          const rerun = await plugin('ADD', id, netns);
          t.equal(rerun.code, 0, `${point}: rerun succeeded ${rerun.stdout}`);
          const ip = String((rerun.json?.ips as { address: string }[] | undefined)?.[0]?.address).split('/')[0] ?? '';
          t.equal(ip, recorded?.ip, `${point}: rerun got the same IP`);
          t.ok(await ping(vm.netns, ip), `${point}: the pod is reachable`);
          const del = await plugin('DEL', id, netns);
          t.equal(del.code, 0, `${point}: DEL`);
        }
        t.same(await leftovers(), { veths: [], used: 0, endpoints: 0, bridge: mode === 'iptables' ? false : false }, 'nothing leaked');
      });

      t.test('kill -9 during ADD, then GC releases everything the runtime no longer has', async (t) => {
        const keep = await cni.addPod(`${px}keeper`);
        for (const point of ADD_POINTS) {
          const netns = await lab.addPodNetns('vm1', `${px}g${ADD_POINTS.indexOf(point)}`);
          await plugin('ADD', `${px}gc-${ADD_POINTS.indexOf(point)}`, netns, { VNET_CNI_TEST_CRASH_AT: point });
        }
        const gcInput = pluginStdin(conflist, 0, { 'cni.dev/valid-attachments': [{ containerID: keep.containerId, ifname: 'eth0' }] });
        const gc = await execPlugin(lab, 'vm1', { CNI_COMMAND: 'GC' }, gcInput);
        t.equal(gc.code, 0, `GC succeeded ${gc.stdout}`);
        const after = await leftovers();
        t.equal(after.endpoints, 1, 'only the kept endpoint remains');
        t.equal(after.used, 1, 'only its IP is allocated');
        t.same(after.veths, [await import('../../control/netlink/veth.js').then((m) => m.hostVethName(keep.containerId, 'eth0'))], 'only its veth remains');
        t.ok(await ping(keep.netns, vm.primaryIp), 'the kept pod still works');
        await cni.del(keep);
      });

      t.test('kill -9 between any two steps of DEL: a rerun converges', async (t) => {
        for (const point of DEL_POINTS) {
          const pod = await cni.addPod(`${px}d${DEL_POINTS.indexOf(point)}`);
          const crashed = await plugin('DEL', pod.containerId, pod.netns, { VNET_CNI_TEST_CRASH_AT: point });
          t.not(crashed.code, 0, `${point}: the plugin died`);
          const rerun = await plugin('DEL', pod.containerId, pod.netns);
          t.equal(rerun.code, 0, `${point}: DEL rerun succeeded`);
        }
        t.same(await leftovers(), { veths: [], used: 0, endpoints: 0, bridge: false }, 'nothing leaked, node restored');
      });

      t.test(`${podCount} concurrent ADDs then DELs through libcni (${IN_FLIGHT} in flight)`, async (t) => {
        const names = Array.from({ length: podCount }, (_, i) => `${px}p${i}`);
        const errors: string[] = [];
        const pods = (await inParallel(names, IN_FLIGHT, (n) => cni.addPod(n).catch((err: Error) => { errors.push(err.message); return undefined; }))).filter(
          (p): p is PodHandle => p !== undefined,
        );
        t.same(errors.slice(0, 3), [], 'no ADD failed');
        t.equal(pods.length, podCount, 'every pod got an address');
        t.equal(new Set(pods.map((p) => p.ip)).size, podCount, 'no duplicate IP');
        t.ok(pods.every((p) => vm.secondaryIps.includes(p.ip)), 'every IP is a NIC secondary');
        const sample = [pods[0]!, pods[Math.floor(podCount / 2)]!, pods[podCount - 1]!];
        for (const p of sample) t.ok(await ping(vm.netns, p.ip), `pod ${p.name} reachable`);
        const delErrors: string[] = [];
        await inParallel(pods, IN_FLIGHT, (p) => cni.del(p).catch((err: Error) => { delErrors.push(err.message); }));
        t.same(delErrors.slice(0, 3), [], 'no DEL failed');
        t.same(await leftovers(), { veths: [], used: 0, endpoints: 0, bridge: false }, 'no leftover link, IP or endpoint');
        const rules = await lab.execVm('vm1', ['sh', '-c', 'iptables-save | grep -c "VNET-" ; ebtables -t nat -L | grep -c "dnat"']);
        t.same(rules.stdout.trim().split('\n'), ['0', '0'], 'no leftover rule');
        const routes = await lab.execVm('vm1', ['ip', '-4', 'route', 'show']);
        t.notMatch(routes.stdout, /dev azv/, 'no leftover /32 route');
      });
    });
  });
}
