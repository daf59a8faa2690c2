// The shapes IPAM passes around: what a pool source returns (one NicPool per
// NIC subnet) and who an allocation belongs to.
import type { PoolEnvironment } from '../types.js';

/** MAC value of a pool that applies to whichever NIC asks (static pools, `"*"` in interfaces files). */
export const ANY_MAC = '*';

/** One NIC subnet as a pool source describes it. */
export interface NicPool {
  /** normalised 'aa:bb:cc:dd:ee:ff' (lower-case), or ANY_MAC */
  mac: string;
  /** the VM's own address on this subnet; '' when the source does not know it (static pools) */
  primaryIp: string;
  /** canonical network, e.g. '10.240.0.0/16' */
  subnet: string;
  prefixLength: number;
  /** the subnet's first address unless a static config overrides it */
  gateway: string;
  /** the pod pool: unique, inside the subnet, never the gateway, the primary, network or broadcast address */
  addresses: string[];
}

export interface PoolSource {
  readonly kind: PoolEnvironment;
  /** Read the node's pools now. Rejects with PoolSourceError (or InvalidConfigError for a bad static config). */
  fetch(signal?: AbortSignal): Promise<NicPool[]>;
}

/** Who holds an address: one CNI attachment. */
export interface Owner {
  containerId: string;
  ifName: string;
}

export interface AllocateOptions {
  /** per-node pod limit; allocation fails once this many addresses are held */
  maxPods: number;
  podName?: string;
  podNamespace?: string;
}

export interface PoolChange {
  /** addresses now in the pool that were not before (ascending) */
  added: string[];
  /** free addresses that left the pool (ascending) */
  removed: string[];
  /** in-use addresses that left the pool in this refresh: kept by their owner, never handed out again */
  orphaned: { ip: string; owner: Owner }[];
}

export interface Allocation {
  ip: string;
  owner: Owner;
  podName?: string;
  podNamespace?: string;
  /** true when the address is no longer in the NIC's pool */
  orphaned: boolean;
}

export interface PoolSummary {
  /** addresses in the pool (free + in use, orphans excluded) */
  size: number;
  /** addresses held by owners, orphans included */
  used: number;
  free: number;
  orphaned: number;
  subnet?: string;
  gateway?: string;
  primaryIp?: string;
  mac?: string;
}
