// One lab holding every setup the dataplane scenarios compare, so that all
// rows come from the same run on the same (noisy) machine:
//   vm1, vm2  vnet-cni iptables mode (pods a, b on vm1; c on vm2)
//   vm3, vm4  vnet-cni ebpf mode     (pods a, b on vm3; c on vm4)
//   vm5       Debian's reference bridge + host-local (pods a, b)
//   vm6, vm7  nothing installed: the VM NICs themselves, the ceiling across VMs
//             and towards the internet (no pod, no NAT inside the VM)
//   raw       two namespaces joined by one veth pair: the same-VM ceiling
import { existsSync } from 'node:fs';
import path from 'node:path';
import { runOk } from '../../control/exec.js';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { VmCni, azureConflist } from '../../test/lab/helpers/cni-harness.js';
import { REPO, type Endpoint } from './load.js';

export type Setup = 'raw veth' | 'bridge+host-local' | 'vnet iptables' | 'vnet ebpf' | 'VM NIC (no pod)';

export interface PodPair {
  setup: Setup;
  client: Endpoint;
  server: Endpoint;
}

export interface DataplaneLab {
  lab: Lab;
  sameVm: PodPair[];
  crossVm: PodPair[];
  /** client endpoints whose traffic to the internet host is SNATed (or the VM itself, for the ceiling) */
  toInternet: { setup: Setup; client: Endpoint }[];
  internet: Endpoint;
  /** the ebpf-mode pods and their VMs (policy rows program them inside the VM) */
  ebpfPods: { vm: string; pod: Endpoint }[];
}

/** The bridge plugin's conflist as in the reference test, pods on the VM's own bridge. */
export function referenceConflist(): Record<string, unknown> {
  return {
    cniVersion: '1.0.0',
    name: 'refnet',
    plugins: [
      {
        type: 'bridge',
        bridge: 'cni0',
        isGateway: true,
        ipMasq: false,
        ipam: { type: 'host-local', ranges: [[{ subnet: '10.88.0.0/16' }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: '/var/lib/vnet-cni/host-local' },
      },
    ],
  };
}

/** vnet-cni's seed conflist without the chained portmap (the reference has none either). */
export function vnetConflist(dataplane: 'iptables' | 'ebpf', extra: Record<string, unknown> = {}): Record<string, unknown> {
  return azureConflist({ dataplane, portmap: false, extra });
}

/** Build the test/cniclient binary if a fresh checkout lacks it. */
export async function ensureCniClient(): Promise<void> {
  if (existsSync(path.join(REPO, 'test', 'cniclient', 'cniclient'))) return;
  await runOk([path.join(REPO, 'scripts', 'build-cniclient.sh')], { timeoutMs: 300_000 });
}

/** CNI_ARGS as kubelet sends them (IgnoreUnknown=1: the bridge plugin rejects unknown keys otherwise). */
export function podArgs(pod: string): string {
  return `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod}`;
}

async function endpoint(cni: VmCni, pod: string): Promise<Endpoint> {
  const handle = await cni.addPod(pod, { args: podArgs(pod) });
  return { netns: handle.netns, ip: handle.ip };
}

async function rawVethPair(lab: Lab): Promise<PodPair> {
  const a = await lab.addPodNetns('vm6', 'rawa');
  const b = await lab.addPodNetns('vm6', 'rawb');
  const nameA = path.basename(a);
  const nameB = path.basename(b);
  await runOk(['ip', '-n', nameA, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', nameB]);
  await runOk(['ip', '-n', nameA, 'addr', 'add', '10.250.0.1/24', 'dev', 'eth0']);
  await runOk(['ip', '-n', nameB, 'addr', 'add', '10.250.0.2/24', 'dev', 'eth0']);
  for (const ns of [nameA, nameB]) {
    await runOk(['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
    await runOk(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
  }
  return { setup: 'raw veth', client: { netns: a, ip: '10.250.0.1' }, server: { netns: b, ip: '10.250.0.2' } };
}

/** Bring the lab up and every pod in it. The caller owns lab.down(). */
export async function buildDataplaneLab(log: (line: string) => void): Promise<DataplaneLab> {
  await ensureCniClient();
  const lab = await Lab.up(defaultSpec(7, 4));
  try {
    const vm = (name: string): Endpoint => ({ netns: lab.vmInfo(name).netns, ip: lab.vmInfo(name).primaryIp });
    const ipt1 = new VmCni(lab, 'vm1', vnetConflist('iptables'));
    const ipt2 = new VmCni(lab, 'vm2', vnetConflist('iptables'));
    const ebpf3 = new VmCni(lab, 'vm3', vnetConflist('ebpf'));
    const ebpf4 = new VmCni(lab, 'vm4', vnetConflist('ebpf'));
    const ref5 = new VmCni(lab, 'vm5', referenceConflist(), '10-ref.conflist');
    const [iA, iB, iC] = [await endpoint(ipt1, 'a'), await endpoint(ipt1, 'b'), await endpoint(ipt2, 'c')];
    const [eA, eB, eC] = [await endpoint(ebpf3, 'a'), await endpoint(ebpf3, 'b'), await endpoint(ebpf4, 'c')];
    const [rA, rB] = [await endpoint(ref5, 'a'), await endpoint(ref5, 'b')];
    const raw = await rawVethPair(lab);
    log(`lab ${lab.prefix}: 7 VMs, 8 pods, raw veth pair`);
    return {
      lab,
      sameVm: [raw, { setup: 'bridge+host-local', client: rA, server: rB }, { setup: 'vnet iptables', client: iA, server: iB }, { setup: 'vnet ebpf', client: eA, server: eB }],
      crossVm: [{ setup: 'VM NIC (no pod)', client: vm('vm6'), server: vm('vm7') }, { setup: 'vnet iptables', client: iA, server: iC }, { setup: 'vnet ebpf', client: eA, server: eC }],
      toInternet: [{ setup: 'VM NIC (no pod)', client: vm('vm6') }, { setup: 'vnet iptables', client: iA }, { setup: 'vnet ebpf', client: eA }],
      internet: { netns: lab.internetNs, ip: lab.internetIp },
      ebpfPods: [{ vm: 'vm3', pod: eA }, { vm: 'vm3', pod: eB }, { vm: 'vm4', pod: eC }],
    };
  } catch (err) {
    await lab.down();
    throw err;
  }
}
