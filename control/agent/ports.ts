// What the Agent needs from the world, as interfaces: the durable store, the
// host's links and namespaces, the process table, the pool sources and the
// dataplanes. control/agent/index.ts wires the real implementations; unit
// tests (test/unit/agent-*.test.ts) wire in-memory fakes and drive the whole
// state machine without root.
import type { DataplaneMode, IpamConfig } from '../types.js';
import type { NodeState } from '../store/node-store.js';
import type { Dataplane, EndpointPlan } from '../dataplane/types.js';
import type { LinkInfo, AddrInfo } from '../netlink/ip.js';
import type { PoolSource } from '../ipam/types.js';
import type { EndpointOwner } from './owner.js';
import type { NetnsSeen } from './reclaim.js';

/**
 * The node's durable intent. Contract (test/unit/store-contract.test.ts runs
 * it against both implementations):
 * - peek() returns a private copy; changing it changes nothing.
 * - transaction(fn) runs fn alone on a private copy of the committed state;
 *   if fn resolves, the copy is committed (durably) before the returned
 *   promise resolves; if fn throws, nothing of it remains.
 * - Transactions never nest (fn must not call transaction()).
 */
export interface StateStore {
  peek(): Promise<NodeState>;
  transaction<T>(fn: (state: NodeState) => Promise<T> | T): Promise<T>;
}

/** The host side the Agent touches itself (the rest is the dataplane's): links, pod plumbing, namespaces. */
export interface HostNetwork {
  /** Refuse to run where the plugin must not (the lab machine's root netns). */
  assertSafe(): void;
  linkInfo(name: string): Promise<LinkInfo | undefined>;
  ipv4Addrs(dev: string): Promise<AddrInfo[]>;
  createVethPair(plan: EndpointPlan): Promise<void>;
  configurePodSide(plan: EndpointPlan): Promise<void>;
  /** Throws describing the first thing wrong inside the pod (or its host veth missing). */
  checkPodSide(plan: EndpointPlan): Promise<void>;
  /** Succeeds if absent. */
  deleteHostVeth(name: string): Promise<void>;
  /** Host veths named like ours (azv + 12 hex), whoever owns them. */
  listHostVeths(): Promise<string[]>;
  /** The pod's network namespace (a path) still exists. */
  netnsExists(netns: string): boolean;
  /** What a netns path names now (its nsfs identity), for reclaim (reclaim.ts). */
  seeNetns(netns: string): NetnsSeen;
}

/** Which process works on an endpoint in progress (see owner.ts). */
export interface Processes {
  current(): EndpointOwner | undefined;
  running(owner: EndpointOwner | undefined): boolean;
}

/** The steps of ADD and DEL between which a test may crash or pause the call. */
export const FAULT_POINTS = [
  'add:after-intent', 'add:after-veth', 'add:after-pod-config', 'add:after-attach',
  'del:after-mark', 'del:after-detach', 'del:after-veth',
] as const;
export type FaultPoint = (typeof FAULT_POINTS)[number];

/**
 * Test-only hooks: called (and awaited) at each fault point. A crash test
 * kills the process there (or never resolves: the in-process equivalent); a
 * pause test waits there. The product wires none; only test entry points
 * (test/support/faulty-*.ts, the unit fakes) pass them.
 */
export interface FaultHooks {
  at(point: FaultPoint): Promise<void> | void;
}

export interface AgentPorts {
  store: StateStore;
  host: HostNetwork;
  processes: Processes;
  /** The dataplane for a mode (created once per mode and Agent). */
  dataplaneFor(mode: DataplaneMode): Promise<Dataplane>;
  /** The pool source a config names (the daemon may answer some from its own caches first: AgentOptions.poolSourceFor). */
  poolSource(ipam: IpamConfig): PoolSource;
  /** epoch ms (pool age, the just-ensured window, record timestamps) */
  now(): number;
}
