// One Agent per node: Add / Del / Check / Gc / Status over the durable store,
// the pool source and the dataplane. Used in-process by the CNI binaries
// (standalone) and by the node daemon; only the transport differs.
//
// Crash safety: every ADD first records its intent (IP + endpoint in phase
// "creating") durably, then touches the kernel, then marks the endpoint
// "ready". A kill -9 anywhere leaves a record that a rerun, DEL or GC
// converges from; the kernel side is always found by deterministic names.
import type { Logger } from 'pino';
import type { AgentApi, Attachment, CniCall, CniResult, NetConf, DataplaneMode } from '../types.js';
import { endpointKey, type EndpointRecord, type NodeState } from '../store/node-store.js';
import { selectNic } from '../ipam/select-nic.js';
import { allocate, applyPool, release, lookup, poolSummary, allocations } from '../ipam/allocator.js';
import type { NicPool, PoolSource } from '../ipam/types.js';
import type { IpamConfig } from '../types.js';
import type { Dataplane, EndpointPlan, EndpointPolicyUpdate, NetworkMode, NodeNetwork } from '../dataplane/types.js';
import { ROUTED_GATEWAY } from '../dataplane/routed.js';
import type { EndpointPolicy, PolicyProvider } from '../policy/types.js';
import { defaultDeny, type LocalEndpoint } from '../policy/compile.js';
import type { LinkInfo } from '../netlink/ip.js';
import { hostVethName, randomMac } from '../netlink/veth.js';
import {
  DataplaneUnavailableError, InvalidConfigError, InvalidEnvError, NotReadyError, PoolExhaustedError, PoolSourceError,
  TryAgainError, UnknownContainerError, VnetError,
} from '../errors.js';
import { Rollback } from './rollback.js';
import type { AgentPorts, FaultHooks, FaultPoint, HostNetwork, Processes, StateStore } from './ports.js';
import { judge } from './reclaim.js';

const WIRESERVER_IP = '168.63.129.16/32';

/** Re-read the pool source at most this often on the ADD path (ms). */
const POOL_MAX_AGE_MS = 30_000;
/** How long a full node ensure by this process vouches for the node's state without a kernel check. */
const JUST_ENSURED_MS = 2_000;

/** A pool fetched before taking the node lock, so a slow source never holds it. */
type Prefetched = { pool: NicPool } | { err: unknown };

/** How long a reclaim pass that released nothing spares pool-exhausted ADDs another pass (see Agent.add). */
export const RECLAIM_RETRY_MS = 10_000;

function poolStale(state: NodeState, now: number): boolean {
  return state.poolFetchedAt === undefined || now - state.poolFetchedAt >= POOL_MAX_AGE_MS;
}

export interface AgentOptions {
  logger: Logger;
  /** The daemon's own pool source for a config (the kubernetes watch cache); undefined: the config's usual source. */
  poolSourceFor?: (ipam: IpamConfig) => PoolSource | undefined;
  /** The daemon's pod cache: UID and labels of a pod on this node, from memory (never an API call). */
  podInfo?: (namespace: string, name: string) => PodInfo | undefined;
  /** Test only (crash and pause points); absent in the product. */
  faults?: FaultHooks;
  /** The daemon's policy engine: what a new endpoint starts with, and which endpoints exist. */
  policy?: AgentPolicy;
}

/** What the agent needs of the policy engine (control/policy/engine.ts implements it). */
export interface AgentPolicy extends PolicyProvider {
  /** The endpoint is ready with `programmed` in the kernel. */
  addEndpoint(ep: LocalEndpoint, programmed?: EndpointPolicy): void;
  removeEndpoint(address: string): void;
}

function localEndpointOf(rec: Pick<EndpointRecord, 'ip' | 'podName' | 'podNamespace'>): LocalEndpoint {
  return {
    family: 'ipv4',
    address: rec.ip,
    ...(rec.podNamespace && rec.podName ? { namespace: rec.podNamespace, name: rec.podName } : {}),
  };
}

export interface PodInfo {
  uid: string;
  labels: Record<string, string>;
}

function podFields(info: PodInfo | undefined): Pick<EndpointRecord, 'podUid' | 'podLabels'> {
  return info ? { podUid: info.uid, podLabels: info.labels } : {};
}

function ownerOf(call: Pick<CniCall, 'containerId' | 'ifName'>): { containerId: string; ifName: string } {
  return { containerId: call.containerId, ifName: call.ifName };
}

function planOf(rec: EndpointRecord): EndpointPlan {
  return {
    containerId: rec.containerId, ifName: rec.ifName, netns: rec.netns, ip: rec.ip, prefixLength: rec.prefixLength,
    gateway: rec.gateway, hostVeth: rec.hostVeth, hostMac: rec.hostMac, podMac: rec.podMac, mtu: rec.mtu,
    ...(rec.netMode ? { netMode: rec.netMode } : {}),
  };
}

/**
 * Which node-wide state a dataplane and mode need. The ebpf dataplane's is one for both modes (routed
 * veths, the programs): its pods differ only inside the pod, so both shapes may share a node. The
 * iptables dataplane's differ (bridge mode puts eth0 on the bridge; transparent leaves it alone).
 */
function nodeKind(dataplane: DataplaneMode, netMode: NetworkMode | undefined): string {
  return dataplane === 'ebpf' ? 'ebpf' : `iptables/${netMode ?? 'bridge'}`;
}

function describeKind(kind: string): string {
  return kind === 'ebpf' ? 'the ebpf dataplane' : `mode ${kind.split('/')[1]} (iptables dataplane)`;
}

/** The first IPv4 address on the NIC, or on the bridge that took the NIC's addresses. */
async function nicIpv4(host: HostNetwork, nic: string, bridge: string): Promise<string | undefined> {
  for (const dev of [nic, bridge]) {
    const addrs = await host.ipv4Addrs(dev).catch(() => []);
    if (addrs[0]) return addrs[0].local;
  }
  return undefined;
}

/** ipsToRouteViaHost (validated by cni/config.ts, kept in raw). */
function routeViaHostOf(config: NetConf): string[] {
  const list = config.raw.ipsToRouteViaHost;
  return Array.isArray(list) ? list.filter((ip): ip is string => typeof ip === 'string') : [];
}

function dnsOf(config: NetConf): CniResult['dns'] {
  const fromRuntime = (config.raw.runtimeConfig as { dns?: CniResult['dns'] } | undefined)?.dns;
  const dns = fromRuntime ?? (config.raw.dns as CniResult['dns'] | undefined);
  return dns && typeof dns === 'object' ? dns : {};
}

export class Agent implements AgentApi {
  private readonly dataplanes = new Map<DataplaneMode, Promise<Dataplane>>();
  /** The node state this process last set up in full, and when (see ensureNode). */
  private lastEnsured: { mode: DataplaneMode; node: NodeNetwork; at: number } | undefined;
  /** When a reclaim pass last released nothing (ports.now()); cleared by one that released something. */
  private lastFruitlessReclaim: number | undefined;
  private readonly log: Logger;
  readonly store: StateStore;
  private readonly host: HostNetwork;
  private readonly processes: Processes;

  /** The ports come from createLocalAgent (index.ts) in the product, from fakes in unit tests. */
  constructor(
    private readonly ports: AgentPorts,
    private readonly opts: AgentOptions,
  ) {
    this.log = opts.logger;
    this.store = ports.store;
    this.host = ports.host;
    this.processes = ports.processes;
  }

  private dataplane(mode: DataplaneMode): Promise<Dataplane> {
    let dp = this.dataplanes.get(mode);
    if (!dp) {
      dp = this.ports.dataplaneFor(mode);
      this.dataplanes.set(mode, dp);
    }
    return dp;
  }

  /** A test's crash or pause point; nothing in the product. */
  private async fault(point: FaultPoint): Promise<void> {
    if (this.opts.faults) await this.opts.faults.at(point);
  }

  // ---- pool -------------------------------------------------------------

  /** Fetch the NIC's pool from the source, matched by the NIC's MAC. */
  private async fetchPool(config: NetConf, nicMac: string): Promise<NicPool> {
    const source = this.opts.poolSourceFor?.(config.ipam) ?? this.ports.poolSource(config.ipam);
    const pools = await source.fetch();
    try {
      return selectNic(pools, nicMac);
    } catch (err) {
      // A well-formed answer about other NICs: name where it came from, like every other source failure.
      if (err instanceof PoolSourceError && 'url' in source) throw new PoolSourceError(`wireserver ${String(source.url)}: ${err.message}`, { cause: err });
      throw err;
    }
  }

  /** Refresh the pool inside a transaction, keeping the cached pool if the source is down. */
  private async refreshPool(state: NodeState, config: NetConf, nicMac: string, force: boolean, prefetched?: Prefetched): Promise<void> {
    if (!force && !poolStale(state, this.ports.now())) return;
    try {
      if (prefetched && 'err' in prefetched) throw prefetched.err;
      const pool = prefetched ? prefetched.pool : await this.fetchPool(config, nicMac);
      const change = applyPool(state.ipam, pool);
      state.poolFetchedAt = this.ports.now();
      if (change.added.length || change.removed.length || change.orphaned.length) {
        this.log.info({ added: change.added, removed: change.removed, orphaned: change.orphaned }, 'pool changed');
      }
      for (const o of change.orphaned) {
        this.log.warn({ ip: o.ip, owner: o.owner }, 'an address in use left the NIC; it stays with its pod and will not be reused');
      }
    } catch (err) {
      const summary = poolSummary(state.ipam);
      if (summary.size > 0 && !(err instanceof InvalidConfigError)) {
        this.log.warn({ err }, 'pool source failed; using the cached pool');
        return;
      }
      throw err;
    }
  }

  private async nodeNetwork(config: NetConf, state: NodeState, nic: LinkInfo): Promise<NodeNetwork> {
    const s = poolSummary(state.ipam);
    if (!s.subnet || !s.gateway) throw new PoolSourceError('the pool has no subnet yet; the pool source has not answered');
    // Static pools do not know the VM's address: take it from the NIC (or the bridge holding the NIC's addresses).
    const primaryIp = s.primaryIp || state.node?.network.primaryIp || (await nicIpv4(this.host, config.master, config.bridge));
    if (!primaryIp) throw new DataplaneUnavailableError(`cannot tell the VM's primary IP: the pool source names none and ${config.master} has no IPv4 address`);
    const prefixLength = Number(s.subnet.split('/')[1]);
    return {
      nic: config.master,
      nicMac: nic.address,
      primaryIp,
      prefixLength,
      subnet: s.subnet,
      gateway: s.gateway,
      noSnatCidrs: [...new Set([s.subnet, ...config.vnetCidrs, WIRESERVER_IP])],
      mtu: nic.mtu,
      bridge: config.bridge,
      bpfRoot: `${config.bpfRoot}/${config.nodeName}`,
      netMode: config.mode,
      routeViaHost: routeViaHostOf(config),
    };
  }

  /** Bring node-wide state to `config.dataplane`, cleaning the other mode if the node switched. */
  private async ensureNode(state: NodeState, config: NetConf, node: NodeNetwork, checkedReady?: NodeNetwork): Promise<Dataplane> {
    const dp = await this.dataplane(config.dataplane);
    const previous = state.node?.mode;
    // Hot path: the node is already set up for this mode and network, as a
    // cheap kernel check made before the lock confirmed. A full ensure is
    // idempotent but spawn-heavy, and this runs under the node lock.
    const same = (n: NodeNetwork | undefined): boolean => n !== undefined && JSON.stringify(n) === JSON.stringify(node);
    // Or this process ensured it a moment ago: ADDs that arrive together on an idle node
    // share one group-commit batch, and all of them peeked "no node" before the first
    // one set it up; a full ensure each (programs reloaded, rules restored) would
    // serialise ~100 ms per pod under the lock.
    const justEnsured = this.lastEnsured !== undefined && this.lastEnsured.mode === config.dataplane && this.ports.now() - this.lastEnsured.at < JUST_ENSURED_MS && same(this.lastEnsured.node);
    if (previous === config.dataplane && same(state.node!.network) && (same(checkedReady) || justEnsured)) {
      state.node!.config = { ...config, dataplane: dp.mode };
      return dp;
    }
    const kind = nodeKind(config.dataplane, config.mode);
    const previousKind = previous ? nodeKind(previous, state.node!.network.netMode) : undefined;
    if (previous && previousKind !== kind) {
      const others = Object.values(state.endpoints).filter((e) => nodeKind(e.mode, e.netMode) === previousKind);
      if (others.length > 0) {
        if (previous !== config.dataplane) {
          throw new DataplaneUnavailableError(
            `this node has ${others.length} pod(s) in ${previous} mode; drain the node (or delete those pods) before switching the dataplane to ${config.dataplane}`,
          );
        }
        throw new DataplaneUnavailableError(
          `this node has ${others.length} pod(s) in ${describeKind(previousKind!)}, and the conflist asks for ${describeKind(kind)}: ` +
            'bridge mode puts eth0 on a bridge, transparent mode leaves it alone and routes each pod, so one node cannot run both; ' +
            `drain the node (or delete those pods) before switching to mode ${config.mode}, or keep mode ${state.node!.network.netMode ?? 'bridge'} in the conflist`,
        );
      }
      const old = await this.dataplane(previous);
      await old.teardownNode(state.node!.network);
      state.node = undefined;
      this.log.info({ from: previousKind, to: kind }, 'node switched dataplane mode');
    }
    try {
      await dp.probe(node);
    } catch (err) {
      if (config.dataplane === 'ebpf' && config.dataplaneFallback && err instanceof DataplaneUnavailableError) {
        this.log.warn({ err }, 'ebpf dataplane unavailable; falling back to iptables as the conflist allows');
        return this.ensureNode(state, { ...config, dataplane: 'iptables', dataplaneFallback: false }, node, undefined);
      }
      throw err;
    }
    await dp.ensureNode(node);
    state.node = { mode: dp.mode, network: node, config: { ...config, dataplane: dp.mode } };
    this.lastEnsured = { mode: dp.mode, node, at: this.ports.now() };
    return dp;
  }

  private resultOf(rec: EndpointRecord, config: NetConf): CniResult {
    return {
      cniVersion: config.cniVersion,
      interfaces: [
        { name: rec.hostVeth, mac: rec.hostMac },
        { name: rec.ifName, mac: rec.podMac, sandbox: rec.netns },
      ],
      ips: [{ address: `${rec.ip}/${rec.prefixLength}`, gateway: rec.gateway, interface: 1 }],
      routes: [{ dst: '0.0.0.0/0', gw: rec.gateway }],
      dns: dnsOf(config),
    };
  }

  // ---- verbs ------------------------------------------------------------

  /**
   * ADD; when the pool is empty, first release endpoints whose pod died without a DEL (reclaim.ts) and try
   * once more. On a full node where nothing died, a pass that released nothing stands for RECLAIM_RETRY_MS:
   * the ADDs that keep coming (kubelet retries, every pod of a scale-up) fail at once instead of each
   * judging every endpoint again. Per process: the daemon's, or one standalone plugin call.
   */
  async add(call: CniCall): Promise<CniResult> {
    try {
      return await this.addOnce(call);
    } catch (err) {
      if (!(err instanceof PoolExhaustedError)) throw err;
      const last = this.lastFruitlessReclaim;
      if (last !== undefined && this.ports.now() - last < RECLAIM_RETRY_MS) throw err;
      if ((await this.reclaim()).length === 0) throw err;
      return this.addOnce(call);
    }
  }

  private async addOnce(call: CniCall): Promise<CniResult> {
    this.host.assertSafe();
    const { config } = call;
    const key = endpointKey(call.containerId, call.ifName);
    const nic = await this.host.linkInfo(config.master);
    if (!nic) throw new DataplaneUnavailableError(`host interface ${config.master} not found; set "master" in the conflist to the VM's NIC`);
    // A pod wired to a NIC that is administratively down has no network; say so instead of handing out an IP.
    if (!nic.flags.includes('UP')) throw new DataplaneUnavailableError(`host interface ${config.master} is down; bring it up (ip link set ${config.master} up) and retry`);

    // Slow work (the pool source, kernel checks) happens before the node lock;
    // the transaction only re-validates, so concurrent ADDs hold it briefly.
    const before = await this.store.peek();
    const prefetched: Prefetched | undefined = poolStale(before, this.ports.now())
      ? await this.fetchPool(config, nic.address).then((pool) => ({ pool }), (err: unknown) => ({ err }))
      : undefined;
    const readyNode = before.node?.mode === config.dataplane && (await (await this.dataplane(config.dataplane)).hasNodeState(before.node.network, nic)) ? before.node.network : undefined;

    const owner = this.processes.current();
    const seenNetns = this.host.seeNetns(call.netns);
    const netnsId = seenNetns.kind === 'id' ? seenNetns.id : undefined;
    const prepared = await this.store.transaction(async (state) => {
      const existing = state.endpoints[key];
      if (existing?.phase === 'ready' && existing.netns === call.netns) return { rec: existing, reused: true, retry: true, dp: await this.dataplane(existing.mode), node: state.node!.network, policyEnforced: state.policyEnforced !== undefined };
      await this.refreshPool(state, config, nic.address, false, prefetched);
      const node = await this.nodeNetwork(config, state, nic);
      const dp = await this.ensureNode(state, config, node, readyNode);
      const ip = await this.allocateIp(state, call, nic.address);
      const rec: EndpointRecord = {
        containerId: call.containerId, ifName: call.ifName, netns: call.netns, ip,
        // Transparent mode: the pod's gateway is the host veth behind 169.254.1.1, as upstream reports it.
        prefixLength: node.prefixLength, gateway: config.mode === 'transparent' ? ROUTED_GATEWAY : node.gateway,
        netMode: config.mode,
        hostVeth: hostVethName(call.containerId, call.ifName),
        hostMac: existing?.hostMac ?? randomMac(), podMac: existing?.podMac ?? randomMac(),
        mtu: node.mtu, mode: dp.mode, phase: 'creating', network: config.name,
        createdAt: new Date(this.ports.now()).toISOString(),
        ...(netnsId ? { netnsId } : {}),
        ...(owner ? { owner } : {}),
        ...(call.args.K8S_POD_NAME ? { podName: call.args.K8S_POD_NAME } : {}),
        ...(call.args.K8S_POD_NAMESPACE ? { podNamespace: call.args.K8S_POD_NAMESPACE } : {}),
        ...(call.args.K8S_POD_NAME && call.args.K8S_POD_NAMESPACE ? podFields(this.opts.podInfo?.(call.args.K8S_POD_NAMESPACE, call.args.K8S_POD_NAME)) : {}),
      };
      state.endpoints[key] = rec;
      return { rec, reused: false, dp, node, retry: existing !== undefined, policyEnforced: state.policyEnforced !== undefined };
    });

    const { rec, dp, node } = prepared;
    await this.fault('add:after-intent');
    if (prepared.reused) {
      // Same container and ifname again: hand back the same IP if the pod is intact, else rebuild it.
      try {
        await this.host.checkPodSide(planOf(rec));
        await dp.checkEndpoint(node, planOf(rec));
        return this.resultOf(rec, config);
      } catch (err) {
        this.log.info({ err, key }, 'repeated ADD found a damaged endpoint; rebuilding it');
      }
    }

    const log = this.log.child({ containerId: call.containerId, ifName: call.ifName, ip: rec.ip });
    const undo = new Rollback(log);
    try {
      const plan: EndpointPlan = { ...planOf(rec), freshMacs: !prepared.retry };
      // Policy goes in with the endpoint, before the pod can send or receive (no window).
      const policy = this.initialPolicy(rec, prepared.policyEnforced);
      if (policy) plan.policy = policy;
      if (prepared.reused || prepared.retry) await this.host.deleteHostVeth(plan.hostVeth); // a crashed earlier attempt may have left it
      await this.host.createVethPair(plan);
      undo.push('delete veth', () => this.host.deleteHostVeth(plan.hostVeth));
      await this.fault('add:after-veth');
      await this.host.configurePodSide(plan);
      await this.fault('add:after-pod-config');
      await dp.attachEndpoint(node, plan);
      undo.push('detach endpoint', () => dp.detachEndpoint(node, plan));
      await this.fault('add:after-attach');
      await this.store.transaction((state) => {
        const cur = state.endpoints[key];
        // Someone (GC, or a reconcile that could not tell this call was alive)
        // removed the intent meanwhile and may have given the IP to another
        // pod: reporting success would hand out an address the store no
        // longer holds for us. Fail; the runtime retries. (A rebuilt endpoint
        // stayed "ready" throughout: the same record, not a "creating" one.)
        if (!cur || cur.ip !== rec.ip || cur.createdAt !== rec.createdAt || cur.phase !== rec.phase) {
          throw new TryAgainError(`the endpoint record for ${key} was removed while the ADD was in progress; retry`);
        }
        cur.phase = 'ready';
        delete cur.owner;
      });
      this.opts.policy?.addEndpoint(localEndpointOf(rec), policy);
      log.info({ hostVeth: plan.hostVeth, mode: dp.mode, pod: rec.podName, podNamespace: rec.podNamespace }, 'endpoint added');
      return this.resultOf({ ...rec, phase: 'ready' }, config);
    } catch (err) {
      log.error({ err }, 'ADD failed; rolling back');
      await undo.run();
      await this.store
        .transaction((state) => {
          delete state.endpoints[key];
          release(state.ipam, ownerOf(call));
        })
        .catch((e: unknown) => log.error({ err: e }, 'could not release the IP after a failed ADD; GC will'));
      // The runtime removed the sandbox under us: say that, not which ip command tripped over it.
      if (call.netns !== '' && !this.host.netnsExists(call.netns)) {
        throw new InvalidEnvError(`network namespace ${call.netns} disappeared during ADD (the container is gone); nothing was left behind`, { cause: err });
      }
      throw err;
    }
  }

  /**
   * The policy a new endpoint starts with: the engine's answer when the daemon
   * runs one; default deny when this node enforces policy but no engine is
   * here (a standalone ADD while the daemon is down); none otherwise.
   */
  private initialPolicy(rec: EndpointRecord, enforced: boolean): EndpointPolicy | undefined {
    const ep = localEndpointOf(rec);
    if (this.opts.policy) return this.opts.policy.policyFor(ep);
    return enforced ? defaultDeny(ep) : undefined;
  }

  /**
   * Program new policies for ready endpoints (the engine's changes), under the
   * node lock: a DEL marks its endpoint 'deleting' under the same lock, so an
   * endpoint being removed is never given rules again after its detach.
   * Returns the addresses that had no ready endpoint (skipped).
   */
  async applyPolicies(policies: EndpointPolicy[]): Promise<string[]> {
    return this.store.transaction(async (state) => {
      const node = state.node?.network;
      const byIp = new Map(Object.values(state.endpoints).filter((r) => r.phase === 'ready').map((r) => [r.ip, r]));
      const skipped: string[] = [];
      const byMode = new Map<DataplaneMode, EndpointPolicyUpdate[]>();
      for (const policy of policies) {
        const rec = byIp.get(policy.address);
        // Compiled for another pod that held this address (a DEL and an ADD
        // reusing the IP raced the engine's compile): never program its rules
        // onto the new pod; the engine recompiles for the new one.
        const otherPod = rec && policy.pod !== undefined && rec.podName !== undefined && policy.pod !== `${rec.podNamespace ?? ''}/${rec.podName}`;
        if (!rec || !node || otherPod) {
          skipped.push(policy.address);
          continue;
        }
        let l = byMode.get(rec.mode);
        if (!l) byMode.set(rec.mode, (l = []));
        l.push({ hostVeth: rec.hostVeth, policy });
      }
      for (const [mode, updates] of byMode) await (await this.dataplane(mode)).applyPolicies(node!, updates);
      return skipped;
    });
  }

  /** Mark (or unmark) this node as enforcing policy; see NodeState.policyEnforced. */
  async setPolicyEnforced(on: boolean): Promise<void> {
    await this.store.transaction((state) => {
      if (on) state.policyEnforced ??= { since: new Date(this.ports.now()).toISOString() };
      else delete state.policyEnforced;
    });
  }

  /** The ready endpoints, as the policy engine tracks them. */
  async policyEndpoints(): Promise<LocalEndpoint[]> {
    const state = await this.store.peek();
    return Object.values(state.endpoints).filter((r) => r.phase === 'ready').map(localEndpointOf);
  }

  /**
   * An IP for the call inside the transaction: from the cached pool, or, if
   * that is exhausted, after re-reading the source (the NIC may have gained
   * addresses since the last fetch).
   */
  private async allocateIp(state: NodeState, call: CniCall, nicMac: string): Promise<string> {
    const opts = {
      maxPods: call.config.maxPods,
      ...(call.args.K8S_POD_NAME ? { podName: call.args.K8S_POD_NAME } : {}),
      ...(call.args.K8S_POD_NAMESPACE ? { podNamespace: call.args.K8S_POD_NAMESPACE } : {}),
    };
    try {
      return allocate(state.ipam, ownerOf(call), opts).ip;
    } catch (err) {
      if (!(err instanceof PoolExhaustedError)) throw err;
      await this.refreshPool(state, call.config, nicMac, true);
      return allocate(state.ipam, ownerOf(call), opts).ip;
    }
  }

  async del(call: CniCall): Promise<void> {
    await this.delIf(call);
  }

  /**
   * DEL; with `expect`, only if the record is still that very attempt (same
   * creation, phase and owner), checked in the same transaction that marks
   * it: reconcile decides from a snapshot that a slow pass over many pods
   * makes old, and meanwhile a CNI call may have retried the ADD to the end.
   */
  private async delIf(call: CniCall, expect?: EndpointRecord): Promise<boolean> {
    this.host.assertSafe();
    const key = endpointKey(call.containerId, call.ifName);
    const owner = this.processes.current();
    const changed = (rec: EndpointRecord | undefined): boolean =>
      expect !== undefined && (!rec || rec.createdAt !== expect.createdAt || rec.phase !== expect.phase || rec.ip !== expect.ip || rec.owner?.pid !== expect.owner?.pid);
    let skipped = false;
    const found = await this.store.transaction((state) => {
      const rec = state.endpoints[key];
      if (changed(rec)) {
        skipped = true;
        return undefined;
      }
      if (!rec) return undefined;
      const before = { ...rec };
      rec.phase = 'deleting';
      if (owner) rec.owner = owner;
      else delete rec.owner;
      return { rec: before, node: state.node?.network };
    });
    if (skipped) {
      this.log.info({ key }, 'reconcile: the endpoint changed since it was looked at; left alone');
      return false;
    }
    await this.fault('del:after-mark');
    if (found) this.opts.policy?.removeEndpoint(found.rec.ip);
    if (found?.node) {
      const dp = await this.dataplane(found.rec.mode);
      try {
        await dp.detachEndpoint(found.node, planOf(found.rec));
      } catch (err) {
        // The dataplane could not even start (bpffs not mounted): nothing was removed, so the pod is
        // still whole; put its phase back and let the runtime retry the DEL.
        if (err instanceof DataplaneUnavailableError && found.rec.phase !== 'deleting') {
          await this.store.transaction((state) => {
            const cur = state.endpoints[key];
            if (cur?.phase === 'deleting') cur.phase = found.rec.phase;
          }).catch(() => {});
        }
        throw err;
      }
    }
    await this.fault('del:after-detach');
    // The veth name is deterministic, so even without a record nothing leaks.
    await this.host.deleteHostVeth(found?.rec.hostVeth ?? hostVethName(call.containerId, call.ifName));
    await this.fault('del:after-veth');
    await this.store.transaction(async (state) => {
      delete state.endpoints[key];
      release(state.ipam, ownerOf(call));
      await this.teardownIfIdle(state);
    });
    this.log.info({ containerId: call.containerId, ifName: call.ifName, ip: found?.rec.ip }, found ? 'endpoint deleted' : 'DEL for an unknown endpoint: nothing to do');
    return true;
  }

  /** The last endpoint left: restore the NIC and remove node-wide rules/programs. */
  private async teardownIfIdle(state: NodeState): Promise<void> {
    if (!state.node || Object.keys(state.endpoints).length > 0) return;
    const dp = await this.dataplane(state.node.mode);
    this.lastEnsured = undefined;
    await dp.teardownNode(state.node.network);
    this.log.info({ mode: state.node.mode }, 'last endpoint gone; node dataplane state removed');
    state.node = undefined;
  }

  async check(call: CniCall): Promise<void> {
    const key = endpointKey(call.containerId, call.ifName);
    const state = await this.store.peek();
    const rec = state.endpoints[key];
    if (!rec || rec.phase !== 'ready') throw new UnknownContainerError(`no endpoint for container ${call.containerId} interface ${call.ifName}`);
    const node = state.node?.network;
    if (!node) throw new UnknownContainerError('the node has no dataplane state');
    const prev = call.prevResult?.ips?.[0]?.address;
    if (prev && prev !== `${rec.ip}/${rec.prefixLength}`) {
      throw new VnetError(`prevResult says ${prev} but the endpoint has ${rec.ip}/${rec.prefixLength}`);
    }
    await this.host.checkPodSide(planOf(rec));
    await (await this.dataplane(rec.mode)).checkEndpoint(node, planOf(rec));
  }

  async gc(config: NetConf, valid: Attachment[]): Promise<void> {
    this.host.assertSafe();
    const keep = new Set(valid.map((a) => endpointKey(a.containerId, a.ifName)));
    const state = await this.store.peek();
    const stale = Object.values(state.endpoints).filter((e) => e.network === config.name && !keep.has(endpointKey(e.containerId, e.ifName)));
    for (const rec of stale) {
      this.log.info({ containerId: rec.containerId, ifName: rec.ifName, ip: rec.ip }, 'GC: removing an attachment the runtime no longer has');
      await this.del({ containerId: rec.containerId, ifName: rec.ifName, netns: rec.netns, args: {}, config });
    }
    // Allocations without an endpoint (azure-vnet-ipam used on its own, or a crash) for owners the runtime does not list.
    await this.store.transaction(async (s) => {
      for (const a of allocations(s.ipam)) {
        const k = endpointKey(a.owner.containerId, a.owner.ifName);
        if (!keep.has(k) && !s.endpoints[k]) release(s.ipam, a.owner);
      }
      await this.teardownIfIdle(s);
    });
  }

  /** CNI STATUS. `requireFreeIp: false` (the node condition) treats a full pool as ready: that is capacity, not a broken network. */
  async status(config: NetConf, opts: { requireFreeIp?: boolean } = {}): Promise<void> {
    const nic = await this.host.linkInfo(config.master);
    if (!nic) throw new NotReadyError(`host interface ${config.master} not found`);
    if (!nic.flags.includes('UP')) throw new NotReadyError(`host interface ${config.master} is down; bring it up (ip link set ${config.master} up)`);
    await this.store.transaction((state) => this.refreshPool(state, config, nic.address, true)).catch((err: unknown) => {
      throw new NotReadyError(`pool source unavailable: ${(err as Error).message}`, { cause: err });
    });
    const s = poolSummary((await this.store.peek()).ipam);
    if (s.free === 0 && opts.requireFreeIp !== false) throw new NotReadyError(`no free pod IP on this node (pool ${s.size}, in use ${s.used})`);
  }

  async ipamAdd(call: CniCall): Promise<CniResult> {
    const nicMac = (await this.host.linkInfo(call.config.master))?.address;
    if (!nicMac) throw new DataplaneUnavailableError(`host interface ${call.config.master} not found; set "master" in the conflist to the VM's NIC`);
    return this.store.transaction(async (state) => {
      await this.refreshPool(state, call.config, nicMac, false);
      const ip = await this.allocateIp(state, call, nicMac);
      const s = poolSummary(state.ipam);
      return {
        cniVersion: call.config.cniVersion,
        ips: [{ address: `${ip}/${s.subnet!.split('/')[1]}`, gateway: s.gateway! }],
        routes: [{ dst: '0.0.0.0/0', gw: s.gateway! }],
        dns: dnsOf(call.config),
      };
    });
  }

  async ipamDel(call: CniCall): Promise<void> {
    await this.store.transaction((state) => {
      release(state.ipam, ownerOf(call));
    });
  }

  /**
   * Make the kernel and the store agree (daemon start, after a crash):
   * endpoints whose sandbox is gone or whose ADD/DEL never finished are
   * removed, live ones whose kernel side is damaged are rebuilt, and host
   * veths nobody owns are deleted. Returns what it fixed.
   */
  async reconcile(): Promise<{ removed: string[]; rebuilt: string[]; strayVeths: string[]; inProgress: string[] }> {
    this.host.assertSafe();
    const report = { removed: [] as string[], rebuilt: [] as string[], strayVeths: [] as string[], inProgress: [] as string[] };
    const config = (await this.store.peek()).node?.config;
    if (!config) return report;
    await this.upgradeNode();
    const state = await this.store.peek();
    for (const [key, rec] of Object.entries(state.endpoints)) {
      const alive = rec.netns !== '' && this.host.netnsExists(rec.netns);
      const cfg = { ...config, name: rec.network, dataplane: rec.mode, mode: rec.netMode ?? 'bridge' };
      if (rec.phase !== 'ready' && this.processes.running(rec.owner)) {
        // A CNI call that ran standalone while the daemon was down is still at it: its own end (or a later DEL/GC) settles it.
        this.log.info({ key, phase: rec.phase, pid: rec.owner?.pid }, 'reconcile: endpoint in progress by a running CNI call; left alone');
        report.inProgress.push(key);
        continue;
      }
      if (!alive || rec.phase !== 'ready') {
        if (await this.delIf({ containerId: rec.containerId, ifName: rec.ifName, netns: rec.netns, args: {}, config: cfg }, rec)) report.removed.push(key);
        else report.inProgress.push(key);
        continue;
      }
      try {
        await this.host.checkPodSide(planOf(rec));
        if (state.node) await (await this.dataplane(rec.mode)).checkEndpoint(state.node.network, planOf(rec));
      } catch (err) {
        this.log.warn({ err, key }, 'reconcile: endpoint damaged; rebuilding');
        // ADD on the same container, ifname and netns rebuilds the endpoint with the IP and MACs it has
        // (a DEL first would release the IP and renumber a running pod).
        await this.add({ containerId: rec.containerId, ifName: rec.ifName, netns: rec.netns, args: {
          ...(rec.podName ? { K8S_POD_NAME: rec.podName } : {}), ...(rec.podNamespace ? { K8S_POD_NAMESPACE: rec.podNamespace } : {}),
        }, config: cfg });
        report.rebuilt.push(key);
      }
    }
    const owned = new Set(Object.values((await this.store.peek()).endpoints).map((e) => e.hostVeth));
    for (const name of await this.host.listHostVeths()) {
      if (!owned.has(name)) {
        await this.host.deleteHostVeth(name);
        report.strayVeths.push(name);
      }
    }
    if (report.removed.length || report.rebuilt.length || report.strayVeths.length || report.inProgress.length) this.log.info(report, 'reconciled');
    return report;
  }

  /**
   * Release the endpoints whose pod died without a DEL: its netns is no longer
   * the one of the ADD and its host veth is gone (the rule and why: reclaim.ts).
   * Run when an ADD finds the pool empty and by the daemon's timer. Returns the keys released.
   */
  async reclaim(): Promise<string[]> {
    this.host.assertSafe();
    const state = await this.store.peek();
    const config = state.node?.config;
    if (!config) return [];
    const released: string[] = [];
    for (const [key, rec] of Object.entries(state.endpoints)) {
      const seen = this.host.seeNetns(rec.netns);
      // Kept whatever the veth says (the usual case: the path still names the ADD's netns): no netlink call.
      if (!judge(rec, seen, false).reclaim) continue;
      // A netlink failure counts as "present": when in doubt, keep the pod.
      const verdict = judge(rec, seen, await this.host.linkInfo(rec.hostVeth).then((l) => l !== undefined, () => true));
      if (!verdict.reclaim) continue;
      this.log.warn({ key, ip: rec.ip, pod: rec.podName, podNamespace: rec.podNamespace, reason: verdict.reason }, 'reclaiming the endpoint of a pod that died without a DEL');
      const cfg = { ...config, name: rec.network, dataplane: rec.mode, mode: rec.netMode ?? 'bridge' };
      if (await this.delIf({ containerId: rec.containerId, ifName: rec.ifName, netns: rec.netns, args: {}, config: cfg }, rec)) released.push(key);
    }
    this.lastFruitlessReclaim = released.length ? undefined : this.ports.now();
    return released;
  }

  /**
   * A new daemon (possibly a new version) takes over a node with live pods: re-install the node-wide dataplane
   * state in place (ebpf: programs reloaded, maps kept; iptables: rules re-applied idempotently). A failure is
   * logged and the old state keeps forwarding.
   */
  private async upgradeNode(): Promise<void> {
    try {
      await this.store.transaction(async (s) => {
        // Only with live pods: after a reboot (every netns gone) reconcile removes the endpoints and the
        // node state instead, and iptables mode must not re-bridge the NIC just to un-bridge it.
        if (!s.node || !Object.values(s.endpoints).some((e) => e.netns !== '' && this.host.netnsExists(e.netns))) return;
        const dp = await this.dataplane(s.node.mode);
        await (dp.upgradeNode ? dp.upgradeNode(s.node.network) : dp.ensureNode(s.node.network));
        this.log.info({ mode: s.node.mode }, 'node dataplane re-installed in place');
      });
    } catch (err) {
      this.log.error({ err }, 'node dataplane upgrade failed; the previous programs/rules keep forwarding');
    }
  }

  /**
   * Sweep the dataplane's idle flow state (the daemon's NAT sweeper; see
   * docs/ebpf.md "NAT expiry"). Without node state, or in a mode with nothing
   * to sweep, does nothing and returns undefined.
   */
  async expireIdle(): Promise<{ nat: number; inbound: number } | undefined> {
    const node = (await this.store.peek()).node;
    if (!node) return undefined;
    const dp = await this.dataplane(node.mode);
    return dp.expireIdle ? dp.expireIdle(node.network) : undefined;
  }

  /** Re-read the pool source now (the daemon's poller); reports orphaned addresses through the log. */
  async refresh(): Promise<void> {
    const config = (await this.store.peek()).node?.config;
    if (!config) return;
    const nic = await this.host.linkInfo(config.master);
    if (!nic) return;
    await this.store.transaction((state) => this.refreshPool(state, config, nic.address, true));
  }

  /**
   * Fill in pod UID and labels on endpoints whose pod the pod watch knows now
   * (it may see the pod after its ADD) or whose labels changed. Touches the
   * store only when something changed; returns how many endpoints changed.
   */
  async annotatePods(podInfo: (namespace: string, name: string) => PodInfo | undefined): Promise<number> {
    const stale = (rec: EndpointRecord): PodInfo | undefined => {
      if (!rec.podName || !rec.podNamespace) return undefined;
      const info = podInfo(rec.podNamespace, rec.podName);
      if (!info) return undefined;
      return info.uid !== rec.podUid || JSON.stringify(info.labels) !== JSON.stringify(rec.podLabels ?? {}) ? info : undefined;
    };
    if (!Object.values((await this.store.peek()).endpoints).some((rec) => stale(rec))) return 0;
    return this.store.transaction((state) => {
      let changed = 0;
      for (const rec of Object.values(state.endpoints)) {
        const info = stale(rec);
        if (!info) continue;
        Object.assign(rec, podFields(info));
        changed++;
      }
      return changed;
    });
  }

  /** The store as JSON, for `vnetctl debug` and the daemon's DUMP. */
  async dump(): Promise<NodeState & { pool: ReturnType<typeof poolSummary> }> {
    const state = await this.store.peek();
    return { ...state, pool: poolSummary(state.ipam) };
  }

  lookupIp(state: NodeState, call: Pick<CniCall, 'containerId' | 'ifName'>): string | undefined {
    return lookup(state.ipam, ownerOf(call));
  }

  async close(): Promise<void> {}
}
