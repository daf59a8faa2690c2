// An in-memory node for the Agent's unit tests: a "kernel" (NIC, network
// namespaces, veth pairs, pod addresses, per-mode dataplane state), the
// HostNetwork and Dataplane views of it the Agent uses, a pool source, a
// process table and a clock. Several Agents over one FakeNode and one
// MemoryStore are successive daemon/plugin processes on the same node.
//
// The kernel behaves like Linux where the Agent relies on it: creating a veth
// whose name exists fails, deleting a veth removes its peer, removing a netns
// destroys the veths inside it (and their host ends).
import pino from 'pino';
import { Agent, type AgentOptions } from '../../../control/agent/agent.js';
import type { AgentPorts, FaultHooks, FaultPoint, HostNetwork, Processes, StateStore } from '../../../control/agent/ports.js';
import type { EndpointOwner } from '../../../control/agent/owner.js';
import type { Dataplane, EndpointPlan, EndpointPolicyUpdate, NodeNetwork } from '../../../control/dataplane/types.js';
import type { DataplaneMode, NetConf } from '../../../control/types.js';
import type { NicPool, PoolSource } from '../../../control/ipam/types.js';
import type { LinkInfo } from '../../../control/netlink/ip.js';
import { DataplaneError, DataplaneUnavailableError, PoolSourceError } from '../../../control/errors.js';
import { parseNetConf } from '../../../cni/config.js';
import { MemoryStore } from './memory-store.js';

export const NIC_MAC = '00:0d:3a:00:00:01';
export const PRIMARY_IP = '10.240.0.4';

interface PodIface {
  ifName: string;
  mac: string;
  hostVeth: string;
  ip?: string;
  prefixLength?: number;
  gateway?: string;
}

/** A kernel operation a test can make fail once (the call throws a DataplaneError, as a netlink error would). */
export type KernelOp = 'createVethPair' | 'configurePodSide' | 'attachEndpoint' | 'detachEndpoint' | 'deleteHostVeth' | 'ensureNode' | 'checkEndpoint';

export class FakeNode {
  nicUp = true;
  nicPresent = true;
  /** network namespaces by path, with the pod interfaces inside */
  readonly netns = new Map<string, Map<string, PodIface>>();
  /** host veth name → where its peer lives */
  readonly hostVeths = new Map<string, { netns: string; ifName: string; mac: string }>();
  /** per-mode node-wide state and attached endpoints (host veth → plan) */
  readonly dp: Record<DataplaneMode, { node?: NodeNetwork; endpoints: Map<string, EndpointPlan>; ensures: number; teardowns: number; sweeps: number }> = {
    iptables: { endpoints: new Map(), ensures: 0, teardowns: 0, sweeps: 0 },
    ebpf: { endpoints: new Map(), ensures: 0, teardowns: 0, sweeps: 0 },
  };
  /** ebpf prerequisites (bpffs) present */
  bpfOk = true;
  /** pool source: the NIC's secondary IPs; fetches counted; `poolDown` makes it fail */
  addresses: string[];
  poolDown = false;
  fetches = 0;
  /** ops that fail the next time they run */
  readonly failNext = new Set<KernelOp>();
  /** processes alive (pid → start ticks); an Agent is one process */
  readonly procs = new Map<number, number>();
  private nextPid = 1000;
  clock = Date.parse('2026-01-01T00:00:00Z');
  readonly store: MemoryStore;

  constructor(poolSize = 8) {
    this.addresses = Array.from({ length: poolSize }, (_, i) => `10.240.0.${10 + i}`);
    this.store = new MemoryStore();
  }

  // ---- the world, as a test changes it -------------------------------------

  /** nsfs identity of each netns path (a new netns mounted at a path gets a new one) */
  private readonly netnsIds = new Map<string, string>();
  private nextNetnsId = 1;

  addNetns(path: string): string {
    if (!this.netns.has(path)) {
      this.netns.set(path, new Map());
      this.netnsIds.set(path, `4:${0xf0000000 + this.nextNetnsId++}`);
    }
    return path;
  }

  /** The runtime removes the sandbox: veths inside die, and their host ends with them. */
  removeNetns(path: string): void {
    for (const iface of this.netns.get(path)?.values() ?? []) this.hostVeths.delete(iface.hostVeth);
    this.netns.delete(path);
    this.netnsIds.delete(path);
  }

  /** A veth someone else (or a crashed earlier life) left behind, with no pod side we know. */
  addStrayVeth(name: string): void {
    this.hostVeths.set(name, { netns: '', ifName: '', mac: '02:00:00:00:00:99' });
  }

  podIface(netns: string, ifName = 'eth0'): PodIface | undefined {
    return this.netns.get(netns)?.get(ifName);
  }

  private maybeFail(op: KernelOp): void {
    if (this.failNext.delete(op)) throw new DataplaneError(`fake kernel: ${op} failed`);
  }

  // ---- HostNetwork ----------------------------------------------------------

  readonly host: HostNetwork = {
    assertSafe: () => {},
    linkInfo: async (name) => this.link(name),
    ipv4Addrs: async (dev) => (dev === 'eth0' && this.nicPresent ? [{ family: 'inet', local: PRIMARY_IP, prefixlen: 16 }] : []),
    createVethPair: async (plan) => {
      this.maybeFail('createVethPair');
      const ns = this.netns.get(plan.netns);
      if (!ns) throw new DataplaneError(`fake kernel: netns ${plan.netns}: no such file or directory`);
      if (this.hostVeths.has(plan.hostVeth)) throw new DataplaneError(`fake kernel: ${plan.hostVeth}: file exists`);
      if (ns.has(plan.ifName)) throw new DataplaneError(`fake kernel: ${plan.ifName} exists in ${plan.netns}`);
      ns.set(plan.ifName, { ifName: plan.ifName, mac: plan.podMac, hostVeth: plan.hostVeth });
      this.hostVeths.set(plan.hostVeth, { netns: plan.netns, ifName: plan.ifName, mac: plan.hostMac });
    },
    configurePodSide: async (plan) => {
      this.maybeFail('configurePodSide');
      const iface = this.podIface(plan.netns, plan.ifName);
      if (!iface) throw new DataplaneError(`fake kernel: ${plan.ifName} not found in ${plan.netns}`);
      Object.assign(iface, { ip: plan.ip, prefixLength: plan.prefixLength, gateway: plan.gateway });
    },
    checkPodSide: async (plan) => {
      const iface = this.podIface(plan.netns, plan.ifName);
      if (!iface) throw new DataplaneError(`interface ${plan.ifName} not found in ${plan.netns}`);
      if (iface.mac !== plan.podMac) throw new DataplaneError(`interface ${plan.ifName} has MAC ${iface.mac}, expected ${plan.podMac}`);
      if (iface.ip !== plan.ip) throw new DataplaneError(`interface ${plan.ifName} lacks ${plan.ip}`);
      if (iface.gateway !== plan.gateway) throw new DataplaneError(`no default route via ${plan.gateway}`);
      if (!this.hostVeths.has(plan.hostVeth)) throw new DataplaneError(`host veth ${plan.hostVeth} not found`);
    },
    deleteHostVeth: async (name) => {
      this.maybeFail('deleteHostVeth');
      const peer = this.hostVeths.get(name);
      if (peer) this.netns.get(peer.netns)?.delete(peer.ifName);
      this.hostVeths.delete(name);
    },
    listHostVeths: async () => [...this.hostVeths.keys()],
    netnsExists: (path) => this.netns.has(path),
    seeNetns: (path) => {
      const id = this.netnsIds.get(path);
      return id ? { kind: 'id', id } : { kind: 'absent' };
    },
  };

  private link(name: string): LinkInfo | undefined {
    if (name === 'eth0') {
      if (!this.nicPresent) return undefined;
      return { ifindex: 2, ifname: 'eth0', address: NIC_MAC, mtu: 1500, operstate: this.nicUp ? 'UP' : 'DOWN', flags: this.nicUp ? ['UP', 'LOWER_UP'] : [] };
    }
    const veth = this.hostVeths.get(name);
    return veth ? { ifindex: 100, ifname: name, address: veth.mac, mtu: 1500, operstate: 'UP', flags: ['UP'] } : undefined;
  }

  // ---- Dataplane (one per mode) --------------------------------------------

  /** Record every applyPolicies batch from now on (the fake dataplanes' applyPolicies programs nothing). */
  recordPolicyApplies(): EndpointPolicyUpdate[][] {
    const calls: EndpointPolicyUpdate[][] = [];
    const orig = this.dataplane.bind(this);
    this.dataplane = (mode: DataplaneMode): Dataplane => ({ ...orig(mode), applyPolicies: async (_n, u) => void calls.push(u) });
    return calls;
  }

  dataplane(mode: DataplaneMode): Dataplane {
    const s = this.dp[mode];
    // Only ebpf keeps flow state to sweep (the iptables dataplane leaves it to conntrack).
    const sweep = mode === 'ebpf' ? { expireIdle: async () => ({ nat: ++s.sweeps, inbound: 0 }) } : {};
    return {
      mode,
      ...sweep,
      probe: async () => {
        if (mode === 'ebpf' && !this.bpfOk) throw new DataplaneUnavailableError('bpffs is not mounted at /sys/fs/bpf; mount it');
      },
      ensureNode: async (node) => {
        this.maybeFail('ensureNode');
        if (mode === 'ebpf' && !this.bpfOk) throw new DataplaneUnavailableError('bpffs is not mounted at /sys/fs/bpf; mount it');
        s.node = node;
        s.ensures++;
      },
      attachEndpoint: async (_node, ep) => {
        this.maybeFail('attachEndpoint');
        if (!this.hostVeths.has(ep.hostVeth)) throw new DataplaneError(`fake kernel: ${ep.hostVeth} not found`);
        s.endpoints.set(ep.hostVeth, { ...ep });
      },
      applyPolicies: async () => {},
      detachEndpoint: async (_node, ep) => {
        if (mode === 'ebpf' && !this.bpfOk) throw new DataplaneUnavailableError('bpffs is not mounted at /sys/fs/bpf; mount it');
        this.maybeFail('detachEndpoint');
        s.endpoints.delete(ep.hostVeth);
      },
      checkEndpoint: async (_node, ep) => {
        this.maybeFail('checkEndpoint');
        const got = s.endpoints.get(ep.hostVeth);
        if (!got || got.ip !== ep.ip || got.podMac !== ep.podMac) throw new DataplaneError(`no ${mode} endpoint for ${ep.ip} on ${ep.hostVeth}`);
      },
      teardownNode: async () => {
        s.node = undefined;
        s.endpoints.clear();
        s.teardowns++;
      },
      hasNodeState: async (node) => s.node !== undefined && JSON.stringify(s.node) === JSON.stringify(node),
    };
  }

  readonly pool: PoolSource = {
    kind: 'static',
    fetch: async (): Promise<NicPool[]> => {
      this.fetches++;
      if (this.poolDown) throw new PoolSourceError('fake wireserver: connection refused');
      return [{ mac: NIC_MAC, primaryIp: PRIMARY_IP, subnet: '10.240.0.0/16', prefixLength: 16, gateway: '10.240.0.1', addresses: [...this.addresses] }];
    },
  };

  // ---- processes and Agents --------------------------------------------------

  /** A new process on the node: its owner identity and the Agent it runs (over the node's store unless given another view of it). */
  agent(opts: Partial<AgentOptions> = {}, store: StateStore = this.store): FakeProcess {
    const pid = this.nextPid++;
    this.procs.set(pid, pid * 7);
    const processes: Processes = {
      current: () => ({ pid, startTicks: pid * 7 }),
      running: (o: EndpointOwner | undefined) => o !== undefined && o.pid !== pid && this.procs.get(o.pid) === o.startTicks,
    };
    const ports: AgentPorts = {
      store,
      host: this.host,
      processes,
      dataplaneFor: async (mode) => this.dataplane(mode),
      poolSource: () => this.pool,
      now: () => this.clock,
    };
    const agent = new Agent(ports, { logger: pino({ level: 'silent' }), ...opts });
    return { pid, agent, kill: () => void this.procs.delete(pid) };
  }

  /** What a test compares against "nothing left": every trace of pods in the kernel and the store. */
  leftovers(): { veths: string[]; podIfaces: string[]; attached: string[]; endpoints: string[]; held: string[] } {
    const st = this.store.snapshot();
    return {
      veths: [...this.hostVeths.keys()].sort(),
      podIfaces: [...this.netns].flatMap(([ns, ifs]) => [...ifs.keys()].map((i) => `${ns}:${i}`)).sort(),
      attached: (['iptables', 'ebpf'] as const).flatMap((m) => [...this.dp[m].endpoints.keys()].map((v) => `${m}:${v}`)).sort(),
      endpoints: Object.keys(st.endpoints).sort(),
      held: Object.keys(st.ipam.holdings ?? {}).sort(),
    };
  }
}

export interface FakeProcess {
  pid: number;
  agent: Agent;
  /** The process dies (its owner is no longer running); its Agent must not be used again. */
  kill(): void;
}

/**
 * Crash at one fault point, the in-process way: the call stops there for
 * good (its promise never settles, nothing after the point runs), like a
 * process killed with SIGKILL. `reached` resolves when it stops.
 */
export function crashAt(point: FaultPoint): { faults: FaultHooks; reached: Promise<void> } {
  let hit!: () => void;
  const reached = new Promise<void>((r) => (hit = r));
  return {
    reached,
    faults: {
      at: (p) => {
        if (p !== point) return;
        hit();
        return new Promise<void>(() => {});
      },
    },
  };
}

/** Pause at one fault point until `resume()`; `reached` resolves when the call is there. */
export function pauseAt(point: FaultPoint): { faults: FaultHooks; reached: Promise<void>; resume(): void } {
  let hit!: () => void;
  let go!: () => void;
  const reached = new Promise<void>((r) => (hit = r));
  const released = new Promise<void>((r) => (go = r));
  return {
    reached,
    resume: () => go(),
    faults: {
      at: (p) => {
        if (p !== point) return;
        hit();
        return released;
      },
    },
  };
}

/** The azure-vnet config as parsed from a conflist entry (the pool itself comes from FakeNode.pool). */
export function netConf(extra: Record<string, unknown> = {}): NetConf {
  return parseNetConf({
    cniVersion: '1.1.0', name: 'azure', type: 'azure-vnet', mode: 'bridge', bridge: 'azure0',
    ipam: { type: 'azure-vnet-ipam' }, stateDir: '/nonexistent/state', logFile: '/dev/null', ...extra,
  }, 'azure-vnet');
}
