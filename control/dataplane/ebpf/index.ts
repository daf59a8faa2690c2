// The ebpf dataplane: no bridge. Each pod is a routed endpoint (routed.ts,
// shared with iptables transparent mode): its host veth answers the pod's ARP
// by proxy (so every pod frame reaches the host veth), carries a /32 route
// for the pod, and runs from_pod; the NIC runs from_nic and to_nic. The
// programs forward between pods and to the NIC and SNAT to the primary IP in
// the kernel; the maps they read are pinned, so a restarted control plane or
// a short-lived CNI call edits them without interrupting traffic.
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { linkInfo, listLinks, netlink, setSysctl } from '../../netlink/ip.js';
import { DataplaneError, DataplaneUnavailableError } from '../../errors.js';
import type { Dataplane, EndpointPlan, NodeNetwork, EndpointPolicyUpdate } from '../types.js';
import { EbpfPrograms, probeKernel, type EbpfConfig } from './programs.js';
import { onBpffs } from './probe.js';
import { attachRoutedHost, checkRoutedHost } from '../routed.js';

function configOf(node: NodeNetwork): EbpfConfig {
  const config: EbpfConfig = { primaryIp: node.primaryIp, nicName: node.nic, nicMac: node.nicMac, noSnatCidrs: node.noSnatCidrs };
  // ipsToRouteViaHost (node-local DNS on a link-local address): always the stack's, even inside a no-SNAT range.
  if (node.routeViaHost?.length) config.stackCidrs = node.routeViaHost.map((ip) => `${ip}/32`);
  return config;
}

/** Open the pinned dataplane, run fn, always release the handles (pins stay). */
async function withPins<T>(node: NodeNetwork, fn: (p: EbpfPrograms) => Promise<T> | T): Promise<T> {
  const programs = await EbpfPrograms.open(node.bpfRoot);
  try {
    return await fn(programs);
  } finally {
    programs.close();
  }
}

function bpffsMissing(root: string): DataplaneUnavailableError {
  return new DataplaneUnavailableError(`bpffs is not mounted where the dataplane pins live (${root}): mount it (mount -t bpf bpf /sys/fs/bpf, or a systemd sys-fs-bpf.mount unit) and retry`);
}

async function linkIndexExists(ifindex: number): Promise<boolean> {
  return (await listLinks()).some((l) => l.ifindex === ifindex);
}

export class EbpfDataplane implements Dataplane {
  readonly mode = 'ebpf' as const;

  async probe(node: NodeNetwork): Promise<void> {
    await probeKernel({ bpffs: node.bpfRoot });
    if (!(await linkInfo(node.nic))) throw new DataplaneUnavailableError(`host interface ${node.nic} not found; set "master" in the conflist to the VM's NIC`);
  }

  async ensureNode(node: NodeNetwork): Promise<void> {
    const nic = await linkInfo(node.nic);
    if (!nic) throw new DataplaneUnavailableError(`host interface ${node.nic} not found; set "master" in the conflist to the VM's NIC`);
    if (nic.master) throw new DataplaneUnavailableError(`${node.nic} is a port of ${nic.master}; the ebpf dataplane needs the NIC unbridged (drain the node's iptables-mode pods first)`);
    // Pods reach the fabric through the host's FIB (bpf_redirect_neigh) and
    // proxy ARP only answers on interfaces that forward.
    await setSysctl('net.ipv4.ip_forward', '1');
    mkdirSync(node.bpfRoot, { recursive: true, mode: 0o700 });
    const programs = await EbpfPrograms.open(node.bpfRoot, configOf(node));
    try {
      await programs.attachNic(node.nic);
    } finally {
      programs.close();
    }
  }

  /**
   * Load this version's BPF object over the pins: the maps are reused (same pinned fds, so endpoints and the SNAT
   * table carry on), the new programs are pinned and replace the old ones on every hook they were attached to
   * (tc replace: one atomic swap per hook, no window without a program). A map whose layout changed cannot be
   * reused: the load fails, the old programs keep running, and the node needs draining (docs/operations.md).
   */
  async upgradeNode(node: NodeNetwork): Promise<void> {
    if (!existsSync(path.join(node.bpfRoot, 'maps'))) return;
    const programs = await EbpfPrograms.open(node.bpfRoot, configOf(node), { reload: true });
    try {
      await programs.attachNic(node.nic);
    } finally {
      programs.close();
    }
  }

  async attachEndpoint(node: NodeNetwork, ep: EndpointPlan): Promise<void> {
    await withPins(node, async (p) => {
      // No window: the policy is in the maps and both hooks run before the pod is reachable at all (the /32 route
      // comes next) and before from_pod forwards for it (it drops sources without an endpoint entry until setEndpoint).
      await p.setPolicies([{ ip: ep.ip, policy: ep.policy ?? null }]);
      const ifindex = await p.attachPod(ep.hostVeth);
      // The routed endpoint's host side (proxy ARP, link up, /32 route): shared with iptables transparent mode.
      await attachRoutedHost(ep, node);
      p.setEndpoint(ep.ip, { ifindex, podMac: ep.podMac, hostMac: ep.hostMac });
    });
  }

  /** One batch: compiled, written under new ids, flipped per endpoint, old ids removed; resolves once the maps hold it. */
  async applyPolicies(node: NodeNetwork, updates: EndpointPolicyUpdate[]): Promise<void> {
    if (updates.length === 0) return;
    if (!existsSync(path.join(node.bpfRoot, 'maps'))) {
      if (!onBpffs(node.bpfRoot)) throw bpffsMissing(node.bpfRoot);
      throw new DataplaneError(`no ebpf dataplane at ${node.bpfRoot}: policies can only be applied to endpoints that exist`);
    }
    await withPins(node, (p) => p.setPolicies(updates.map((u) => ({ ip: u.policy.address, policy: u.policy }))));
  }

  async detachEndpoint(node: NodeNetwork, ep: EndpointPlan): Promise<void> {
    if (!existsSync(path.join(node.bpfRoot, 'maps'))) {
      // No pins because bpffs is not mounted (not because the node was torn down): the pod's map
      // entry is out of reach, so refuse rather than report a DEL that left it behind.
      if (!onBpffs(node.bpfRoot)) throw bpffsMissing(node.bpfRoot);
      return;
    }
    const host = await linkInfo(ep.hostVeth);
    const entry = await withPins(node, (p) => p.getEndpoint(ep.ip));
    // The map is keyed by IP: if the entry leads to another live link, the IP
    // now serves another pod (this endpoint's record was dropped and the IP
    // reused while an ADD was rolling back); that pod's entry stays.
    if (entry && host && entry.ifindex !== host.ifindex && (await linkIndexExists(entry.ifindex))) return;
    // Down first: deleting the entry drops the pod's policy, and the stack
    // must not deliver to it unpoliced while the veth still exists.
    if (host) await netlink([{ op: 'linkSet', dev: ep.hostVeth, up: false }]).catch(() => undefined);
    await withPins(node, (p) => p.deleteEndpoint(ep.ip));
    // The /32 route and the tc hook go with the veth itself.
  }

  async checkEndpoint(node: NodeNetwork, ep: EndpointPlan): Promise<void> {
    const host = await checkRoutedHost(ep);
    await withPins(node, async (p) => {
      const entry = p.getEndpoint(ep.ip);
      if (!entry) throw new DataplaneError(`endpoint map has no entry for ${ep.ip}`);
      if (entry.ifindex !== host.ifindex) throw new DataplaneError(`endpoint map sends ${ep.ip} to ifindex ${entry.ifindex}, but ${ep.hostVeth} is ${host.ifindex}`);
      if (entry.podMac.toLowerCase() !== ep.podMac.toLowerCase()) throw new DataplaneError(`endpoint map has MAC ${entry.podMac} for ${ep.ip}, expected ${ep.podMac}`);
      if ((await p.hookProgram(ep.hostVeth, 'ingress')) !== 'from_pod') {
        throw new DataplaneError(`from_pod is not attached to ${ep.hostVeth}`);
      }
      if ((await p.hookProgram(ep.hostVeth, 'egress')) !== 'to_pod') {
        throw new DataplaneError(`to_pod is not attached to ${ep.hostVeth} (egress)`);
      }
    });
  }

  async expireIdle(node: NodeNetwork): Promise<{ nat: number; inbound: number }> {
    if (!existsSync(path.join(node.bpfRoot, 'maps'))) return { nat: 0, inbound: 0 };
    return withPins(node, (p) => p.expireNat());
  }

  async teardownNode(node: NodeNetwork): Promise<void> {
    if (!existsSync(path.join(node.bpfRoot, 'maps'))) return;
    const programs = await EbpfPrograms.open(node.bpfRoot);
    await programs.unloadAll();
  }

  /** Cheap: the pins exist and the NIC runs our ingress program. */
  async hasNodeState(node: NodeNetwork): Promise<boolean> {
    if (!existsSync(path.join(node.bpfRoot, 'maps'))) return false;
    return withPins(node, async (p) => (await p.hookProgram(node.nic, 'ingress')) === 'from_nic');
  }
}
