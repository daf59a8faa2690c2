// Fail-closed for pods the Kubernetes watch has not shown yet: `vnetctl
// daemon --network-policy` in a lab VM against the stand-in API server, pods
// through libcni. A pod whose Pod object does not exist yet is ADDed: it must
// start default deny both ways (not "unlabelled, so selected by nothing,
// so open"), and be reprogrammed as soon as the Pod arrives. One dataplane mode
// (the first of VNET_TEST_MODES): the engine's decision does not depend on it.
import t from 'tap';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { ping } from '../../lab/tools/net.js';
import { startChild, stopChild, waitForLine, pollUntil } from '../../lab/children.js';
import { vmExecArgv } from '../../lab/vm-exec.js';
import type { KubeObj } from '../../lab/kube-standin.js';
import { MODES, REPO, VmCni, azureConflist } from './helpers/cni-harness.js';
import { StandinProc, VM_KUBECONFIG } from './helpers/kube-standin-proc.js';

const SOCKET = '/run/vnet-cni/daemon.sock';
const VNETCTL = path.join(REPO, 'dist', 'control', 'cli', 'vnetctl.js');
const mode = MODES[0]!;

interface DirectionJson {
  isolated: boolean;
  rules: unknown[];
}
interface PolicyDumpJson {
  status: { synced: boolean };
  endpoints: Array<{ endpoint: { address: string; name?: string }; policy: { ingress: DirectionJson; egress: DirectionJson }; applied?: { ingress: DirectionJson; egress: DirectionJson } }>;
}

t.test(`daemon --network-policy: a pod the watch has not shown yet starts default-deny (${mode} mode)`, async (t) => {
  const lab = await Lab.up(defaultSpec(1, 6));
  t.teardown(() => lab.down());
  const vm = lab.spec.vms[0]!;
  const api = await StandinProc.start(lab, 'vm1');
  t.teardown(() => api.stop());
  const nodeName = 'vm1';
  await api.put({ apiVersion: 'v1', kind: 'Node', metadata: { name: nodeName }, spec: {}, status: { conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'ready' }] } });
  await api.put({
    apiVersion: 'vnetcni.dev/v1alpha1', kind: 'NodeNetworkConfig', metadata: { name: nodeName, namespace: 'kube-system' },
    spec: { primaryIP: vm.primaryIp, macAddress: vm.mac, subnet: lab.spec.subnet, secondaryIPs: vm.secondaryIps.slice(0, 3) },
  });
  await api.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } });
  const pod = (name: string, labels: Record<string, string>): KubeObj => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default', labels }, spec: { nodeName } });
  await api.put(pod('known', { app: 'known' }));

  const daemon: ChildProcess = startChild(vmExecArgv(lab.names, 'vm1', [process.execPath, VNETCTL, 'daemon', '--socket', SOCKET,
    '--node-name', nodeName, '--kubeconfig', VM_KUBECONFIG, '--network-policy']));
  t.teardown(() => stopChild(daemon));
  await waitForLine(daemon, /^READY /, 60_000, 'vnetctl daemon');
  const dump = async (): Promise<PolicyDumpJson> => {
    const res = await lab.execVm('vm1', [process.execPath, VNETCTL, 'debug', 'policy', '--json', '--socket', SOCKET]);
    if (res.code !== 0) throw new Error(`debug policy: ${res.stderr}`);
    const view = JSON.parse(res.stdout) as { enabled: boolean; why?: string; dump?: PolicyDumpJson };
    if (!view.dump) throw new Error(`debug policy: not enabled (${view.why ?? '?'})`);
    return view.dump;
  };
  await pollUntil(async () => (await dump()).status.synced || undefined, 60_000, 300, 'the policy source synced');
  const cni = new VmCni(lab, 'vm1', azureConflist({ cniVersion: '1.0.0', dataplane: mode, portmap: false, extra: { daemonSocket: SOCKET }, ipam: { environment: 'kubernetes' } }));
  const known = await cni.addPod('known');
  // No Pod object for "late" yet: the watch has not delivered it.
  const late = await cni.addPod('late');
  const lateView = async () => (await dump()).endpoints.find((e) => e.endpoint.address === late.ip);
  const first = await lateView();
  t.same(first?.policy.ingress, { isolated: true, rules: [] }, 'unknown pod: ingress default deny');
  t.same(first?.policy.egress, { isolated: true, rules: [] }, 'unknown pod: egress default deny');
  t.notOk(await ping(known.netns, late.ip, { count: 2 }), 'no policy selects "known", yet it cannot reach the unknown pod');
  t.notOk(await ping(late.netns, known.ip, { count: 2 }), 'and the unknown pod reaches nobody');
  t.ok(await ping(known.netns, vm.primaryIp), 'the known pod (selected by nothing) is open');

  // The Pod arrives (no policy selects it): the endpoint is reprogrammed open.
  await api.put(pod('late', { app: 'late' }));
  await pollUntil(async () => {
    const v = await lateView();
    return v?.applied && !v.applied.ingress.isolated && !v.applied.egress.isolated ? v : undefined;
  }, 30_000, 300, 'late reprogrammed once its Pod arrived');
  await pollUntil(async () => ((await ping(known.netns, late.ip)) ? true : undefined), 30_000, 200, 'known reaches late');
  t.pass('once the Pod arrived, late is open like every pod no policy selects');
  await cni.del(late);
  await cni.del(known);
});
