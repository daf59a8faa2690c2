// The dataplane interface. Both implementations (iptables: bridge + ebtables +
// iptables; ebpf: routed veths + TC programs) satisfy it, so the agent and the
// lab tests never branch on the mode.
import type { DataplaneMode } from '../types.js';
import type { LinkInfo } from '../netlink/ip.js';

/** Facts about the node's NIC and VNet, from the pool source and the host. */
export interface NodeNetwork {
  /** Host NIC, e.g. eth0 */
  nic: string;
  nicMac: string;
  primaryIp: string;
  prefixLength: number;
  subnet: string;
  gateway: string;
  /** Destinations never SNATed: subnet, vnetCidrs, 168.63.129.16/32 */
  noSnatCidrs: string[];
  mtu: number;
  /** Bridge name for bridge mode, e.g. azure0 */
  bridge: string;
  /** bpffs root for this node (ebpf mode) */
  bpfRoot: string;
}

/** Everything needed to build or remove one pod endpoint. */
export interface EndpointPlan {
  containerId: string;
  ifName: string;
  netns: string;
  ip: string;
  prefixLength: number;
  gateway: string;
  hostVeth: string;
  hostMac: string;
  podMac: string;
  mtu: number;
}

/** What the kernel really has for an endpoint, for CHECK and reconciliation. */
export interface KernelEndpoint {
  hostVeth: string;
  ip?: string;
}

export interface Dataplane {
  readonly mode: DataplaneMode;
  /** Verify prerequisites; throws DataplaneUnavailableError naming what is missing. */
  probe(node: NodeNetwork): Promise<void>;
  /** Idempotently prepare node-wide state (bridge, SNAT rules, programs). Called under the node lock. */
  ensureNode(node: NodeNetwork): Promise<void>;
  /** Host-side wiring for a pod whose veth exists and whose pod side is configured. Idempotent. */
  attachEndpoint(node: NodeNetwork, ep: EndpointPlan): Promise<void>;
  /** Undo attachEndpoint; succeeds if already gone. */
  detachEndpoint(node: NodeNetwork, ep: EndpointPlan): Promise<void>;
  /** Throws DataplaneError describing the first mismatch with what attachEndpoint programs. */
  checkEndpoint(node: NodeNetwork, ep: EndpointPlan): Promise<void>;
  /**
   * Daemon start (an upgrade replaces the daemon and its files): put this version's node-wide state in place of
   * the running one without interrupting established flows. Called under the node lock while endpoints exist.
   * Absent: ensureNode is used (it is idempotent).
   */
  upgradeNode?(node: NodeNetwork): Promise<void>;
  /** Remove node-wide state after the last endpoint left. Called under the node lock. */
  teardownNode(node: NodeNetwork): Promise<void>;
  /** True if this mode's node-wide state is present (used when the node switches modes). */
  /** `nic`: the NIC's link if the caller already read it (saves a netlink round trip on the ADD hot path). */
  hasNodeState(node: NodeNetwork, nic?: LinkInfo): Promise<boolean>;
}
