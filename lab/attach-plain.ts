// A stand-in for the CNI plugin, so the demo and the fabric tests can have
// pods before the plugin exists: a veth into the pod netns, the pod gets a
// secondary IP /prefixLen with default via the gateway, the VM routes the /32
// to the veth and answers the pod's ARP by proxy_arp, and pods' traffic to
// anything outside the VNet and on-prem is SNATed to the primary IP by
// iptables INSIDE the VM's netns. The lead swaps in the real plugin through
// the AttachPod type.
import { LabError } from './errors.js';
import { parseIpv4 } from './ipv4.js';
import type { Lab } from './lab.js';

export interface AttachedPod {
  ip: string;
  /** the pod's netns path (/run/netns/...) */
  netns: string;
}

export type AttachPod = (lab: Lab, vm: string, pod: string) => Promise<AttachedPod>;

const SNAT_CHAIN = 'LAB-POD-SNAT';
/** IPs handed out per lab (this process only). */
const allocated = new WeakMap<Lab, Map<string, string>>();

function hostVethName(ip: string): string {
  return `pv${(parseIpv4(ip) & 0xffffff).toString(16)}`;
}

async function must(lab: Lab, netns: string, argv: string[], input?: string): Promise<void> {
  const result = await lab.execNs(netns, argv, { input });
  if (result.code !== 0) throw new LabError(`${argv.join(' ')} in ${netns}: ${result.stderr.trim()}`);
}

async function ensureVmSnat(lab: Lab, vm: string): Promise<void> {
  const info = lab.vmInfo(vm);
  const exists = await lab.execVm(vm, ['iptables', '-w', '-t', 'nat', '-S', SNAT_CHAIN]);
  if (exists.code === 0) return;
  const rules = [
    '*nat',
    `:${SNAT_CHAIN} - [0:0]`,
    `-A POSTROUTING -o eth0 -m addrtype ! --src-type LOCAL -j ${SNAT_CHAIN}`,
    `-A ${SNAT_CHAIN} -d ${lab.subnet} -j RETURN`,
    `-A ${SNAT_CHAIN} -d ${lab.onpremPrefix} -j RETURN`,
    `-A ${SNAT_CHAIN} -j SNAT --to-source ${info.primaryIp}`,
    'COMMIT',
    '',
  ].join('\n');
  const result = await lab.execVm(vm, ['iptables-restore', '-w', '--noflush'], { input: rules });
  if (result.code !== 0) throw new LabError(`iptables-restore in ${vm}: ${result.stderr.trim()}`);
}

export const plainAttach: AttachPod = async (lab, vm, pod) => {
  const info = lab.vmInfo(vm);
  const taken = allocated.get(lab) ?? new Map<string, string>();
  allocated.set(lab, taken);
  const ip = info.secondaryIps.find((candidate) => !taken.has(candidate));
  if (ip === undefined) throw new LabError(`${vm} has no free secondary IP for pod ${pod}`);
  taken.set(ip, `${vm}/${pod}`);
  try {
    const netns = await lab.addPodNetns(vm, pod);
    const hostIf = hostVethName(ip);
    await must(lab, info.netns, ['ip', '-batch', '-'], [
      `link add ${hostIf} type veth peer name eth0 netns ${netns.split('/').pop()}`,
      `ntable change name arp_cache dev ${hostIf} proxy_delay 0`,
      `link set ${hostIf} up`,
      `route add ${ip}/32 dev ${hostIf}`,
      '',
    ].join('\n'));
    await must(lab, info.netns, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1', `net.ipv4.conf.${hostIf}.proxy_arp=1`]);
    await must(lab, netns, ['ip', '-batch', '-'], [
      'link set lo up',
      `addr add ${ip}/${info.prefixLen} dev eth0`,
      'link set eth0 up',
      `route add default via ${info.gateway} dev eth0`,
      '',
    ].join('\n'));
    await ensureVmSnat(lab, vm);
    return { ip, netns };
  } catch (err) {
    taken.delete(ip);
    throw err;
  }
};

/** Undo plainAttach: delete the pod netns (its veth goes with it) and free the IP. */
export async function plainDetach(lab: Lab, pod: AttachedPod): Promise<void> {
  await lab.removePodNetns(pod.netns);
  allocated.get(lab)?.delete(pod.ip);
}
