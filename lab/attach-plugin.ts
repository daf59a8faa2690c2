// Pods for the demo through the real plugin, the way kubelet makes them:
// the seed conflist (azure-vnet + chained portmap) in the VM's
// /etc/cni/net.d, and libcni (test/cniclient) calling bin/azure-vnet.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LabError } from './errors.js';
import type { Lab } from './lab.js';
import type { AttachPod } from './attach-plain.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = here.includes(`${path.sep}dist${path.sep}`) ? path.resolve(here, '..', '..') : path.resolve(here, '..');
const CNICLIENT = path.join(repoRoot, 'test', 'cniclient', 'cniclient');
const CNI_PATH = `${path.join(repoRoot, 'bin')}:/usr/lib/cni`;

/** The seed conflist, plus the on-prem range as a no-SNAT prefix (the wireserver does not report peerings). */
export function seedConflist(dataplane: 'iptables' | 'ebpf'): Record<string, unknown> {
  const plugin: Record<string, unknown> = { type: 'azure-vnet', mode: 'bridge', bridge: 'azure0', ipam: { type: 'azure-vnet-ipam' }, vnetCidrs: ['172.16.1.0/24'] };
  if (dataplane === 'ebpf') plugin.dataplane = 'ebpf';
  return { cniVersion: '0.3.0', name: 'azure', plugins: [plugin, { type: 'portmap', capabilities: { portMappings: true }, snat: true }] };
}

/** An AttachPod that ADDs through libcni and azure-vnet in the given dataplane mode. */
export function pluginAttach(dataplane: 'iptables' | 'ebpf'): AttachPod {
  return async (lab: Lab, vm: string, pod: string) => {
    writeFileSync(path.join(lab.vmPaths(vm).cniConf, '10-azure.conflist'), JSON.stringify(seedConflist(dataplane), null, 2));
    const netns = await lab.addPodNetns(vm, pod);
    const argv = [CNICLIENT, 'add', '--conflist', '/etc/cni/net.d/10-azure.conflist', '--cni-path', CNI_PATH, '--cache-dir', '/var/lib/vnet-cni/libcni-cache',
      '--container', `demo-${vm}-${pod}`, '--netns', netns, '--ifname', 'eth0', '--args', `K8S_POD_NAMESPACE=demo;K8S_POD_NAME=${vm}-${pod}`];
    const res = await lab.execVm(vm, argv, { env: { CNI_PATH }, timeoutMs: 120_000 });
    if (res.code !== 0) throw new LabError(`azure-vnet ADD for ${vm}/${pod} failed: ${res.stderr.trim() || res.stdout.trim()}`);
    const ip = (JSON.parse(res.stdout) as { ips?: { address: string }[] }).ips?.[0]?.address.split('/')[0];
    if (!ip) throw new LabError(`azure-vnet ADD for ${vm}/${pod} returned no IP: ${res.stdout}`);
    return { ip, netns };
  };
}
