// The daemon with the Kubernetes API (control/k8s) in a lab VM, against the
// stand-in API server running in the same VM netns (no kube-apiserver binary
// exists here). Real plugin calls through libcni (cniclient) and the daemon:
// the pool follows the VM's NodeNetworkConfig live, ADD fails fast before the
// first sync, pod UID/labels land in the endpoint records, the NNC status
// shows the allocations, the node condition follows the dataplane, and a
// failing API server neither blocks nor breaks CNI calls. One dataplane mode
// (the first of VNET_TEST_MODES): the Kubernetes side does not depend on it.
import t from 'tap';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { startChild, stopChild, waitForLine, pollUntil } from '../../lab/children.js';
import { vmExecArgv } from '../../lab/vm-exec.js';
import type { KubeObj } from '../../lab/kube-standin.js';
import { CniRunFailed, MODES, REPO, VmCni, azureConflist, type PodHandle } from './helpers/cni-harness.js';
import { StandinProc, VM_KUBECONFIG } from './helpers/kube-standin-proc.js';

const SOCKET = '/run/vnet-cni/daemon.sock';
const NS = 'kube-system';
const VNETCTL = path.join(REPO, 'dist', 'control', 'cli', 'vnetctl.js');
const mode = MODES[0]!;

interface PoolJson {
  summary: { size: number; used: number; free: number; orphaned: number };
  allocations: { ip: string; owner: { containerId: string }; podName?: string; orphaned: boolean }[];
}
interface EndpointsJson {
  endpoints: { ip: string; store?: { podName?: string; podUid?: string; podLabels?: Record<string, string> } }[];
}
interface NncStatusJson {
  allocated: number;
  free: number;
  allocations: { ip: string; containerID: string; ifName: string; podNamespace?: string; podName?: string; podUID?: string }[];
}

t.test(`daemon with the Kubernetes API (stand-in) in ${mode} mode`, async (t) => {
  const lab = await Lab.up(defaultSpec(1, 8));
  t.teardown(() => lab.down());
  const vm = lab.spec.vms[0]!;
  const [s0, s1, s2, s3] = vm.secondaryIps as [string, string, string, string];
  const api = await StandinProc.start(lab, 'vm1');
  t.teardown(() => api.stop());
  const nodeName = 'vm1';
  const nnc = (secondaryIPs: string[]): KubeObj => ({
    apiVersion: 'vnetcni.dev/v1alpha1', kind: 'NodeNetworkConfig', metadata: { name: nodeName, namespace: NS },
    spec: { primaryIP: vm.primaryIp, macAddress: vm.mac, subnet: lab.spec.subnet, secondaryIPs },
  });
  const pod = (name: string, labels: Record<string, string>): KubeObj => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default', labels }, spec: { nodeName } });
  await api.put({ apiVersion: 'v1', kind: 'Node', metadata: { name: nodeName }, spec: {}, status: { conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'kubelet is posting ready status' }] } });

  let daemon: ChildProcess | undefined = startChild(vmExecArgv(lab.names, 'vm1', [process.execPath, VNETCTL, 'daemon', '--socket', SOCKET,
    '--node-name', nodeName, '--kubeconfig', VM_KUBECONFIG, '--status-debounce-ms', '200', '--condition-seconds', '1',
    '--api-backoff-ms', '200', '--api-backoff-max-ms', '1600']));
  t.teardown(async () => {
    if (daemon) await stopChild(daemon);
  });
  await waitForLine(daemon, /^READY /, 30_000, 'vnetctl daemon');
  const cni = new VmCni(lab, 'vm1', azureConflist({ cniVersion: '1.0.0', dataplane: mode, extra: { daemonSocket: SOCKET }, ipam: { environment: 'kubernetes' } }));
  const debug = async <T>(view: string): Promise<T> => {
    const res = await lab.execVm('vm1', [process.execPath, VNETCTL, 'debug', view, '--json', '--socket', SOCKET]);
    if (res.code !== 0) throw new Error(`debug ${view}: ${res.stderr}`);
    return JSON.parse(res.stdout) as T;
  };
  const addFails = async (name: string): Promise<{ code?: number; msg?: string }> => {
    try {
      await cni.addPod(name);
    } catch (err) {
      if (err instanceof CniRunFailed) return err.cniError ?? {};
      throw err;
    }
    throw new Error(`ADD ${name} succeeded but was expected to fail`);
  };
  const condition = async (): Promise<Record<string, string> | undefined> =>
    ((await api.get('nodes', undefined, nodeName))!.status as { conditions: Record<string, string>[] }).conditions.find((c) => c.type === 'NetworkUnavailable');
  const daemonLog = (): string => readFileSync(path.join(lab.vmPaths('vm1').log, 'vnet-cni-daemon.log'), 'utf8');
  const pods: Record<string, PodHandle> = {};

  t.test('before the NodeNetworkConfig exists: ADD fails at once with code 11; the node says NetworkUnavailable', async (t) => {
    const err = await addFails('early');
    t.equal(err.code, 11, 'try again later');
    t.match(err.msg, /NodeNetworkConfig kube-system\/vm1 .*(not synced|does not exist)/, 'the message says why');
    const c = await pollUntil(async () => (await condition())?.status === 'True' ? condition() : undefined, 20_000, 200, 'NetworkUnavailable=True');
    t.match(c, { reason: 'VnetCniNotReady', message: /not synced/ });
  });

  t.test('pool from the CRD; a pod known to the watch gets UID and labels at ADD, a late one when it appears', async (t) => {
    const p1obj = await api.put(pod('p1', { app: 'web', tier: 'front' }));
    await api.put(nnc([s0, s1]));
    await pollUntil(() => daemonLog().includes('NodeNetworkConfig synced') || undefined, 30_000, 200, 'the daemon synced the NNC');
    pods.p1 = await cni.addPod('p1');
    pods.p2 = await cni.addPod('p2');
    t.same([pods.p1.ip, pods.p2.ip].sort(), [s0, s1].sort(), 'the two CRD addresses');
    const c = await pollUntil(async () => (await condition())?.status === 'False' ? condition() : undefined, 20_000, 200, 'NetworkUnavailable=False');
    t.match(c, { reason: 'VnetCniReady' });
    const p2obj = await api.put(pod('p2', { app: 'late' }));
    const eps = await pollUntil(async () => {
      const v = await debug<EndpointsJson>('endpoints');
      return v.endpoints.find((e) => e.store?.podName === 'p2')?.store?.podUid ? v : undefined;
    }, 20_000, 300, 'p2 UID filled in');
    const rec = (name: string) => eps.endpoints.find((e) => e.store?.podName === name)!.store!;
    t.equal(rec('p1').podUid, p1obj.metadata.uid, 'p1 UID recorded at ADD');
    t.same(rec('p1').podLabels, { app: 'web', tier: 'front' }, 'p1 labels');
    t.equal(rec('p2').podUid, p2obj.metadata.uid, 'p2 UID filled in when the pod appeared');
    const text = await lab.execVm('vm1', [process.execPath, VNETCTL, 'debug', 'endpoints', '--socket', SOCKET]);
    t.match(text.stdout, new RegExp(`${p1obj.metadata.uid!.slice(0, 8)}\\s+app=web,tier=front`), 'debug endpoints shows UID and labels');
  });

  t.test('an IP added to the CRD becomes allocatable', async (t) => {
    const err = await addFails('p3-early');
    t.equal(err.code, 100, 'pool used up');
    await api.put(nnc([s0, s1, s2]));
    await pollUntil(async () => (await debug<PoolJson>('pool')).summary.size === 3 || undefined, 20_000, 300, 'pool size 3');
    pods.p3 = await cni.addPod('p3');
    t.equal(pods.p3.ip, s2, 'the new address');
  });

  t.test('a removed free IP leaves the pool; a removed in-use IP is orphaned, never re-issued', async (t) => {
    await cni.del(pods.p2!);
    const freed = pods.p2!.ip;
    const kept = pods.p1!.ip;
    delete pods.p2;
    await api.put(nnc([s0, s1, s2].filter((ip) => ip !== freed && ip !== kept).concat(s3)));
    const pool = await pollUntil(async () => {
      const p = await debug<PoolJson>('pool');
      return p.summary.orphaned === 1 ? p : undefined;
    }, 20_000, 300, 'orphan');
    t.match(pool.summary, { size: 2, used: 2, free: 1, orphaned: 1 });
    t.match(pool.allocations.find((a) => a.ip === kept), { orphaned: true, podName: 'p1' }, 'p1 keeps its address, flagged');
    pods.p4 = await cni.addPod('p4');
    t.equal(pods.p4.ip, s3, 'the one free address, not the removed ones');
    const err = await addFails('p5');
    t.equal(err.code, 100, `neither ${freed} (removed) nor ${kept} (orphaned) is handed out`);
  });

  t.test('status shows the allocations (IP -> pod)', async (t) => {
    const want = Object.values(pods).map((p) => p.ip).sort();
    const st = await pollUntil(async () => {
      const s = (await api.get('nodenetworkconfigs', NS, nodeName))!.status as NncStatusJson | undefined;
      return s && s.allocations.map((a) => a.ip).sort().join() === want.join() ? s : undefined;
    }, 20_000, 300, 'status allocations');
    t.equal(st.allocated, 3);
    t.equal(st.free, 0);
    const p1 = st.allocations.find((a) => a.podName === 'p1')!;
    t.match(p1, { ip: pods.p1!.ip, containerID: pods.p1!.containerId, ifName: 'eth0', podNamespace: 'default' });
    t.ok(p1.podUID, 'with the pod UID');
    const patches = (await api.requests()).filter((r) => r.method === 'PATCH' && r.path.endsWith(`/nodenetworkconfigs/${nodeName}/status`));
    t.ok(patches.length >= 1, `${patches.length} status PATCHes for 6 ADD/DEL calls and 4 pool changes`);
  });

  t.test('API server failing: CNI calls work from the cached pool; the watch backs off, then recovers', async (t) => {
    await cni.del(pods.p4!);
    delete pods.p4;
    await api.cmd({ op: 'failNext', n: 1_000_000 });
    await api.cmd({ op: 'dropWatches' });
    pods.p6 = await cni.addPod('p6');
    t.equal(pods.p6.ip, s3, 'ADD served from the last synced pool');
    const backoffs = await pollUntil(() => {
      const lines = daemonLog().split('\n').filter((l) => l.includes('failed; backing off') && l.includes('NodeNetworkConfig'));
      const parsed = lines.map((l) => JSON.parse(l) as { failures: number; delayMs: number });
      return parsed.some((b) => b.failures === 3) ? parsed : undefined;
    }, 30_000, 300, 'three backoffs');
    const delayOf = (n: number): number => backoffs.find((b) => b.failures === n)!.delayMs;
    // --api-backoff-ms 200: step n waits within [100, 200] * 2^(n-1) ms, so step 3 is at least 400 and step 1 at most 200.
    t.ok(delayOf(1) <= 200 && delayOf(3) >= 400, `backoff grows: ${backoffs.slice(0, 3).map((b) => b.delayMs).join(', ')} ms`);
    await api.cmd({ op: 'failNext', n: 0 });
    await api.put(nnc([s0, s3, s1]));
    await pollUntil(async () => (await debug<PoolJson>('pool')).summary.size === 3 || undefined, 60_000, 300, 'recovered watch delivers the change');
    t.pass('the watch recovered and applied the change made while it was failing');
    const k = await debug<{ enabled: boolean; stats: { nodeNetworkConfig: { errors: number; failures: number; synced: boolean }; statusWriter: { writes: number } } }>('kubernetes');
    t.ok(k.enabled && k.stats.nodeNetworkConfig.errors >= 3, `debug kubernetes shows the errors (${k.stats.nodeNetworkConfig.errors})`);
    t.equal(k.stats.nodeNetworkConfig.failures, 0, 'and no failure streak after the recovery');
    const text = await lab.execVm('vm1', [process.execPath, VNETCTL, 'debug', 'kubernetes', '--socket', SOCKET]);
    t.match(text.stdout, /^watch nodenetworkconfig: open [\d.]+s, last event [\d.]+s ago, failure streak 0$/m, 'a line per watch: age, last event, streak');
    t.match(text.stdout, /^watch pods: .*, last event .*, failure streak \d+$/m, 'and one for the pod watch');
  });

  t.test('the node condition follows the dataplane (NIC missing -> True, back -> False)', async (t) => {
    t.equal((await condition())?.status, 'False');
    const nic = 'eth0';
    await lab.execVm('vm1', ['ip', 'link', 'set', nic, 'down']);
    await lab.execVm('vm1', ['ip', 'link', 'set', nic, 'name', 'eth0gone']);
    try {
      // Down first, then renamed: a check between the two says "is down"; wait for the state after both.
      const c = await pollUntil(async () => {
        const now = await condition();
        return now?.status === 'True' && /not found/.test(now.message ?? '') ? now : undefined;
      }, 20_000, 300, 'True');
      t.match(c, { reason: 'VnetCniNotReady', message: /eth0 not found/ });
    } finally {
      await lab.execVm('vm1', ['ip', 'link', 'set', 'eth0gone', 'name', nic]);
      await lab.execVm('vm1', ['ip', 'link', 'set', nic, 'up']);
    }
    await pollUntil(async () => (await condition())?.status === 'False' || undefined, 20_000, 300, 'False again');
    t.pass('False again once eth0 is back');
    const node = (await api.get('nodes', undefined, nodeName))!.status as { conditions: { type: string }[] };
    t.same(node.conditions.map((c) => c.type).sort(), ['NetworkUnavailable', 'Ready'], 'kubelet\'s Ready condition untouched');
  });

  t.test('cleanup through the daemon', async (t) => {
    for (const p of Object.values(pods)) await cni.del(p);
    const st = await pollUntil(async () => {
      const s = (await api.get('nodenetworkconfigs', NS, nodeName))!.status as NncStatusJson | undefined;
      return s && s.allocations.length === 0 ? s : undefined;
    }, 20_000, 300, 'status after DELs');
    t.match(st, { allocated: 0, free: 3 }, 'nothing held; the three CRD addresses free');
    await stopChild(daemon!);
    daemon = undefined;
  });
});
