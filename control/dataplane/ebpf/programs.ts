// The loader of the ebpf dataplane: loads bpf/vnet.bpf.o once per node, pins
// its maps and programs under a root the caller names, and from then on every
// process (the daemon after a restart, a short-lived CNI call) reopens the
// pins instead of loading again, so attached programs and NAT state never
// stop. It also attaches the tc hooks and edits the maps, with typed values.
//
// Pin layout: <pinRoot>/maps/<map>, <pinRoot>/progs/<program>.
// A flock on the <pinRoot> directory serialises load/pin/unpin across processes.
import fs from 'node:fs';
import path from 'node:path';
import { randomInt } from 'node:crypto';
import { DataplaneError, DataplaneUnavailableError, InvalidConfigError, UnsafeEnvironmentError } from '../../errors.js';
import { isNativeError, native, repoRoot, type BpfMap, type BpfProgram, type TcTarget } from '../../../native/index.js';
import {
  CFG_F,
  CIDR_F,
  CTL_F,
  MAPS,
  NAT_F,
  PROGRAMS,
  decodeCidrInfo,
  decodeConfig,
  decodeEndpoint,
  decodeEndpointKey,
  decodeFlowEntry,
  decodeLpmKey,
  decodeNatEntry,
  decodeNatTuple,
  encodeCidrInfo,
  encodeConfig,
  encodeEndpoint,
  encodeEndpointKey,
  encodeLpmKey,
  encodeNatTuple,
  encodeU32Key,
  encodePolMatch,
  natClosed,
  parseCidr,
  protoName,
  sumPerCpuU64,
  type ConfigValue,
  type EndpointValue,
  type MapKey,
  POL_DIR,
  POL_FLOW,
  POL_F,
  decodePolEp,
  decodePolEpKey,
  decodePolFlowKey,
  decodePolIdKey,
  encodePolCidrKey,
  encodePolEp,
  encodePolEpKey,
  encodePolIdKey,
  encodePolIdVal,
  encodePolPortKey,
  encodePolPortVal,
} from './layouts.js';
import { compileDirection, type CompiledDirection } from './policy.js';
import type { EndpointPolicy } from '../../policy/types.js';

export { probeKernel } from './probe.js';
import { withPinLock } from './pin-lock.js';

/** Wireserver / Azure DNS: always reachable without SNAT. */
export const WIRESERVER_CIDR = '168.63.129.16/32';
/** tc filter identity of our programs on every hook (priority 1: run before anything else). */
export const TC_HANDLE = 0x564e;
export const TC_PRIORITY = 1;
const BPFFS_MAGIC = 0xcafe4a11;
const LAB_GUARD_FILE = '/run/vnet-cni-lab/.guard';
const PROC_NET_INIT_INO = 0xeffffff9;

export interface EbpfConfig {
  /** The NIC's primary IP: the SNAT source. */
  primaryIp: string;
  /** The NIC, by ifindex or by name (resolved in the dataplane's netns). */
  nicIfindex?: number;
  nicName?: string;
  nicMac: string;
  /** Never SNATed: the NIC's subnet plus vnetCidrs (peered, on-prem). 168.63.129.16/32 is always added. */
  noSnatCidrs: string[];
  /** Always handed to the kernel stack (e.g. the service CIDR, so kube-proxy sees it even if it overlaps noSnatCidrs). */
  stackCidrs?: string[];
  /**
   * Redirect pod traffic for outside the VNet straight to the NIC as well. Off by default: such traffic goes through
   * the kernel stack, where kube-proxy can DNAT a ClusterIP we cannot recognise; it is SNATed on eth0 egress either way.
   */
  fastPathExternal?: boolean;
  /** Consult kernel conntrack so flows netfilter NAT touched stay in the stack (default true). */
  conntrackCheck?: boolean;
  /** SNAT ports (also ICMP echo ids), inclusive. Default 61000-65535: outside Linux's ephemeral range. */
  natPortRange?: { min: number; max: number };
  /**
   * Idle timeouts of SNAT entries and inbound-flow records. Defaults: TCP 3600 s, UDP 60 s, ICMP 30 s. A TCP SNAT
   * pair that saw FIN both ways gets tcpFinMs (default 60 s: a Linux remote's TIME_WAIT, so a reused port never
   * meets the remote's old socket), one that saw RST gets tcpRstMs (default 10 s); the smaller of these and tcpMs applies.
   */
  timeouts?: { tcpMs?: number; udpMs?: number; icmpMs?: number; tcpFinMs?: number; tcpRstMs?: number };
}

export interface OpenOptions {
  /** netns (path) holding the NIC and the pod veths, for attach/detach/link lookups. Default: the caller's. */
  netns?: string;
  /** The BPF object. Default: <repo>/bpf/vnet.bpf.o. */
  objectPath?: string;
  /** Load the object even if pins exist (upgrade): maps are reused, programs re-pinned and re-attached in place. */
  reload?: boolean;
}

export interface EndpointEntry extends Required<EndpointValue> {
  ip: string;
}

export interface NatEntry {
  proto: ReturnType<typeof protoName>;
  pod: { ip: string; port: number };
  remote: { ip: string; port: number };
  nat: { ip: string; port: number };
  /** Newest of the two directions, bpf_ktime_get_ns() clock (CLOCK_MONOTONIC). */
  lastSeenNs: bigint;
  /** The reverse entry is missing (evicted): replies cannot be translated. */
  orphan: boolean;
  /** TCP close tracking, NAT_F bits of both entries: FIN_OUT (pod sent FIN), FIN_IN (remote sent FIN), RST. */
  closeFlags: number;
  /** RST seen, or FIN both ways: the pair is on its short closing timeout. */
  closed: boolean;
}

export interface InboundFlow {
  proto: ReturnType<typeof protoName>;
  pod: { ip: string; port: number };
  remote: { ip: string; port: number };
  lastSeenNs: bigint;
}

export interface AttachedHook {
  ifname: string;
  ifindex: number;
  direction: 'ingress' | 'egress';
  /** Our program's name, or null if a program we do not own sits at our handle/priority. */
  program: string | null;
  progId: number;
}

export interface PolicyDrops {
  ip: string;
  direction: 'ingress' | 'egress';
  packets: bigint;
}

export interface PolicyFlow {
  proto: ReturnType<typeof protoName>;
  /** 'conn': a connection (ports, or the ICMP echo id as local port); 'fragment': a datagram whose first fragment was admitted (local.port = its IP id, for the later fragments). */
  kind: 'conn' | 'fragment';
  local: { ip: string; port: number };
  remote: { ip: string; port: number };
  lastSeenNs: bigint;
}

/** What the policy maps hold, for debug views and cleanup checks. */
export interface PolicyMapState {
  /** Endpoint ip -> its active policy ids and isolation. */
  endpoints: Map<string, { ingressId: number; egressId: number; ingressIsolated: boolean; egressIsolated: boolean }>;
  /** Registered policy ids (shared by endpoints whose direction compiles alike). */
  ids: number[];
  cidrEntries: number;
  portEntries: number;
}

/** One policy id's keys in the tries, kept per process so a delete does not walk the tries. */
interface PolicyKeys {
  digest: string;
  cidrKeys: Buffer[];
  portKeys: Buffer[];
}
const policyKeyCache = new Map<string, Map<number, PolicyKeys>>();

const PROGRAM_NAMES = Object.values(PROGRAMS);
type ProgramName = (typeof PROGRAM_NAMES)[number];

export class EbpfPrograms {
  private closed = false;

  private constructor(
    readonly pinRoot: string,
    private readonly maps: Record<MapKey, BpfMap>,
    private readonly progs: Record<ProgramName, BpfProgram>,
    private readonly netns: string | undefined,
  ) {}

  /**
   * Open the dataplane at pinRoot: reuse the pins if they exist, else load and pin. With cfg, (re)write the config
   * and the CIDR sets; without, the pins must exist (a CNI call that only edits endpoints).
   */
  static async open(pinRoot: string, cfg?: EbpfConfig, options: OpenOptions = {}): Promise<EbpfPrograms> {
    const root = path.resolve(pinRoot);
    ensurePinDirs(root);
    const self = await withPinLock(root, async () => {
      const pinned = allPinned(root);
      if (!pinned && !cfg) throw new DataplaneUnavailableError(`no ebpf dataplane pinned at ${root}`);
      const loaded = pinned && !options.reload ? openPins(root) : await loadAndPin(root, options.objectPath);
      const programs = new EbpfPrograms(root, loaded.maps, loaded.progs, options.netns);
      if (loaded.replacedProgramIds.size > 0) await programs.reattach(loaded.replacedProgramIds);
      return programs;
    });
    if (cfg) {
      try {
        await self.configure(cfg);
      } catch (err) {
        self.close();
        throw err;
      }
    }
    return self;
  }

  /** Rewrite the config map and the CIDR sets (keeps the bookkeeping flags). */
  async configure(cfg: EbpfConfig): Promise<void> {
    const nicIfindex = cfg.nicIfindex ?? (cfg.nicName ? await this.ifindexOf(cfg.nicName) : 0);
    if (!nicIfindex) throw new InvalidConfigError('ebpf config needs nicIfindex or nicName');
    const range = cfg.natPortRange ?? { min: 61000, max: 65535 };
    if (!(Number.isInteger(range.min) && Number.isInteger(range.max) && range.min >= 1 && range.max <= 65535 && range.min <= range.max))
      throw new InvalidConfigError(`invalid natPortRange ${range.min}-${range.max}`);
    const ms = (v: number | undefined, dflt: number): bigint => BigInt(Math.round((v ?? dflt) * 1e6));
    let flags = CFG_F.READY;
    if (cfg.fastPathExternal) flags |= CFG_F.FASTPATH_EXTERNAL;
    if (cfg.conntrackCheck ?? true) flags |= CFG_F.CT_CHECK;
    const value: ConfigValue = {
      primaryIp: cfg.primaryIp,
      nicIfindex,
      nicMac: cfg.nicMac,
      flags,
      natPortMin: range.min,
      natPortMax: range.max,
      ctlFlags: this.config()?.ctlFlags ?? 0,
      tcpTimeoutNs: ms(cfg.timeouts?.tcpMs, 3_600_000),
      udpTimeoutNs: ms(cfg.timeouts?.udpMs, 60_000),
      icmpTimeoutNs: ms(cfg.timeouts?.icmpMs, 30_000),
      tcpFinTimeoutNs: ms(cfg.timeouts?.tcpFinMs, 60_000),
      tcpRstTimeoutNs: ms(cfg.timeouts?.tcpRstMs, 10_000),
    };
    const cidrs = new Map<string, number>();
    const add = (c: string, flag: number): void => {
      const p = parseCidr(c);
      const key = `${p.addr}/${p.prefixlen}`;
      cidrs.set(key, (cidrs.get(key) ?? 0) | flag);
    };
    for (const c of [...cfg.noSnatCidrs, WIRESERVER_CIDR]) add(c, CIDR_F.NOSNAT);
    for (const c of cfg.stackCidrs ?? []) add(c, CIDR_F.STACK);
    await this.syncCidrs(cidrs);
    // Config last: it carries READY, so the programs never act on half a configuration.
    this.maps.config.update(encodeU32Key(0), encodeConfig(value));
  }

  /** The current config map value, or null before the first configure(). */
  config(): ConfigValue | null {
    const raw = this.maps.config.lookup(encodeU32Key(0));
    if (!raw) return null;
    const c = decodeConfig(raw);
    return c.flags & CFG_F.READY ? c : null;
  }

  /** The CIDR sets as written: cidr -> CIDR_F flags. */
  async cidrs(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const [k, v] of await this.maps.cidrs.entries()) out.set(decodeLpmKey(k), decodeCidrInfo(v));
    return out;
  }

  // ---- attachments ---------------------------------------------------------

  /** from_nic on ingress and to_nic on egress of the NIC (default: the configured one). Idempotent. */
  async attachNic(ifname?: string): Promise<void> {
    this.assertSafeTarget();
    const target = this.nicTarget(ifname);
    const ingress = await native().tcAttach(this.progs.from_nic, { ...target, direction: 'ingress', replace: true });
    await native().tcAttach(this.progs.to_nic, { ...target, direction: 'egress', replace: true });
    if (ingress.createdHook) this.setCtlFlag(CTL_F.NIC_HOOK_CREATED, true);
  }

  /** Remove our NIC programs; the clsact qdisc goes too, but only if we created it. */
  async detachNic(ifname?: string): Promise<void> {
    const target = this.nicTarget(ifname);
    await native().tcDetach({ ...target, direction: 'ingress' });
    await native().tcDetach({ ...target, direction: 'egress' });
    if ((this.config()?.ctlFlags ?? 0) & CTL_F.NIC_HOOK_CREATED) {
      await native().tcDestroyHook({ ...target, direction: 'both' });
      this.setCtlFlag(CTL_F.NIC_HOOK_CREATED, false);
    }
  }

  /**
   * from_pod on ingress and to_pod (policy for what the stack delivers) on egress of a host-side pod veth (name or
   * ifindex). Idempotent. Resolves with its ifindex.
   */
  async attachPod(hostVeth: string | number): Promise<number> {
    this.assertSafeTarget();
    const r = await native().tcAttach(this.progs.to_pod, { ...this.filter(hostVeth), direction: 'egress', replace: true });
    await native().tcAttach(this.progs.from_pod, { ...this.filter(r.ifindex), direction: 'ingress', replace: true });
    return r.ifindex;
  }

  /** false if nothing of ours was attached. Deleting the veth removes the hook anyway. */
  async detachPod(hostVeth: string | number): Promise<boolean> {
    const egress = await native().tcDetach({ ...this.filter(hostVeth), direction: 'egress' });
    const ingress = await native().tcDetach({ ...this.filter(hostVeth), direction: 'ingress' });
    return ingress || egress;
  }

  /** The program of ours at one hook of one interface, or null (one netlink query, for hot paths). */
  async hookProgram(iface: string | number, direction: 'ingress' | 'egress'): Promise<string | null> {
    const q = await native().tcQuery({ ...this.filter(iface), direction });
    return q ? (this.programIds().get(q.progId) ?? null) : null;
  }

  /** Every hook in the dataplane's netns that holds a filter at our handle/priority. */
  async attachedHooks(): Promise<AttachedHook[]> {
    const byId = this.programIds();
    const out: AttachedHook[] = [];
    for (const link of await native().listLinks(this.netns)) {
      for (const direction of ['ingress', 'egress'] as const) {
        const q = await native().tcQuery({ ...this.filter(link.index), direction });
        if (q) out.push({ ifname: link.name, ifindex: link.index, direction, program: byId.get(q.progId) ?? null, progId: q.progId });
      }
    }
    return out;
  }

  // ---- endpoints -------------------------------------------------------------

  setEndpoint(ip: string, ep: EndpointValue): void {
    if (!Number.isInteger(ep.ifindex) || ep.ifindex <= 0) throw new InvalidConfigError(`invalid ifindex ${ep.ifindex} for ${ip}`);
    this.maps.endpoints.update(encodeEndpointKey(ip), encodeEndpoint(ep));
  }

  getEndpoint(ip: string): EndpointEntry | null {
    const raw = this.maps.endpoints.lookup(encodeEndpointKey(ip));
    return raw ? { ip, ...decodeEndpoint(raw) } : null;
  }

  /** Removes the endpoint, its policy and its NAT/inbound/policy-flow state (so a reused IP starts clean). false if it was absent. */
  async deleteEndpoint(ip: string): Promise<boolean> {
    const existed = this.maps.endpoints.delete(encodeEndpointKey(ip));
    await this.setPolicies([{ ip, policy: null }]);
    for (const dir of Object.values(POL_DIR)) this.maps.polDrops.delete(encodePolEpKey(ip, dir));
    await this.purgeFlows((podIp) => podIp === ip);
    return existed;
  }

  // ---- NetworkPolicy ---------------------------------------------------------------

  /**
   * Replace the policy of these endpoints (null: none, everything allowed). All rules are compiled before anything is
   * written (a bad rule throws InvalidConfigError and changes nothing). Without a window: a changed direction gets
   * a new policy id whose entries are written first, then the endpoint's one vnet_pol_eps value flips to it (a single
   * map update), then ids no endpoint uses any more are deleted. Endpoints whose directions compile alike share an id.
   * Established connections of an endpoint stay allowed (like conntrack-based engines).
   */
  async setPolicies(updates: Array<{ ip: string; policy: EndpointPolicy | null }>): Promise<void> {
    // Endpoints selected by the same policies have equal directions: compile each distinct one once.
    const compiled = new Map<string, CompiledDirection>();
    const compile = (dir: EndpointPolicy['ingress']): CompiledDirection | null => {
      if (!dir.isolated) return null;
      const key = JSON.stringify(dir.rules.map((r) => [r.peers, r.ports]));
      let c = compiled.get(key);
      if (!c) compiled.set(key, (c = compileDirection(dir)));
      return c;
    };
    const plans = updates.map(({ ip, policy }) => {
      encodePolEpKey(ip); // validates the address
      if (!policy) return { ip, ingress: null, egress: null, flags: 0 };
      if (policy.family !== 'ipv4') throw new InvalidConfigError(`policy for ${ip}: family ${String(policy.family)} is not supported (IPv4 only)`);
      const flags = (policy.ingress.isolated ? POL_F.INGRESS_ISOLATED : 0) | (policy.egress.isolated ? POL_F.EGRESS_ISOLATED : 0);
      return { ip, flags, ingress: compile(policy.ingress), egress: compile(policy.egress) };
    });
    // Nothing to do for endpoints without policy that never had one (the ADD path of a policy-free node).
    if (plans.every((p) => p.flags === 0 && !this.maps.polEps.lookup(encodePolEpKey(p.ip)))) return;
    await withPinLock(this.pinRoot, async () => {
      const registered = new Map<number, string>();
      const byDigest = new Map<string, number>();
      for (const [k, v] of await this.maps.polIds.entries()) {
        const hex = v.toString('hex');
        registered.set(decodePolIdKey(k), hex);
        byDigest.set(hex, decodePolIdKey(k));
      }
      const idFor = (c: CompiledDirection | null): number => {
        if (!c) return 0;
        const hex = c.digest.toString('hex');
        const known = byDigest.get(hex);
        if (known !== undefined) return known;
        let id = 0;
        while (id === 0 || registered.has(id)) id = randomInt(1, 0xffffffff);
        this.writePolicyEntries(id, c);
        // Registered only once complete: a writer that dies before this leaves an orphan the next GC removes.
        this.maps.polIds.update(encodePolIdKey(id), encodePolIdVal(c.digest));
        registered.set(id, hex);
        byDigest.set(hex, id);
        return id;
      };
      for (const p of plans) {
        const key = encodePolEpKey(p.ip);
        if (p.flags === 0) {
          this.maps.polEps.delete(key);
          continue;
        }
        const value = encodePolEp({ ingressId: idFor(p.ingress), egressId: idFor(p.egress), flags: p.flags });
        this.maps.polEps.update(key, value); // the flip: one value, atomically replaced
      }
      await this.gcPolicies(registered);
    });
  }

  /** The policy maps' contents, summarised. */
  async policyState(): Promise<PolicyMapState> {
    const endpoints: PolicyMapState['endpoints'] = new Map();
    for (const [k, v] of await this.maps.polEps.entries()) {
      const e = decodePolEp(v);
      endpoints.set(decodePolEpKey(k).ip, {
        ingressId: e.ingressId,
        egressId: e.egressId,
        ingressIsolated: (e.flags & POL_F.INGRESS_ISOLATED) !== 0,
        egressIsolated: (e.flags & POL_F.EGRESS_ISOLATED) !== 0,
      });
    }
    const ids = (await this.maps.polIds.entries()).map(([k]) => decodePolIdKey(k)).sort((a, b) => a - b);
    return { endpoints, ids, cidrEntries: (await this.maps.polCidrs.entries()).length, portEntries: (await this.maps.polPorts.entries()).length };
  }

  /** Packets dropped by policy, per endpoint and direction (summed over CPUs). */
  async policyDrops(): Promise<PolicyDrops[]> {
    return (await this.maps.polDrops.entries()).map(([k, v]) => {
      const key = decodePolEpKey(k);
      const direction: PolicyDrops['direction'] = key.dir === POL_DIR.egress ? 'egress' : 'ingress';
      return { ip: key.ip, direction, packets: sumPerCpuU64(v) };
    });
  }

  /** Connections admitted by an endpoint's policy (the stateful part), from the endpoint's side. */
  async policyFlows(): Promise<PolicyFlow[]> {
    return (await this.maps.polFlows.entries()).map(([k, v]) => {
      const f = decodePolFlowKey(k);
      const kind: PolicyFlow['kind'] = f.kind === POL_FLOW.frag ? 'fragment' : 'conn';
      return { proto: protoName(f.proto), kind, local: { ip: f.local, port: f.lport }, remote: { ip: f.remote, port: f.rport }, lastSeenNs: decodeFlowEntry(v) };
    });
  }

  async listEndpoints(): Promise<EndpointEntry[]> {
    const entries = await this.maps.endpoints.entries();
    return entries.map(([k, v]) => ({ ip: decodeEndpointKey(k), ...decodeEndpoint(v) })).sort((a, b) => a.ip.localeCompare(b.ip));
  }

  // ---- state views -------------------------------------------------------------

  /** SNAT flows, joined from the forward and reverse maps. */
  async natEntries(): Promise<NatEntry[]> {
    const fwd = await this.maps.snatFwd.entries();
    const out: NatEntry[] = [];
    for (const [k, v] of fwd) {
      const t = decodeNatTuple(k);
      const f = decodeNatEntry(v);
      const revRaw = this.maps.snatRev.lookup(encodeNatTuple({ saddr: f.addr, daddr: t.daddr, sport: f.port, dport: t.dport, proto: t.proto }));
      const rev = revRaw ? decodeNatEntry(revRaw) : null;
      const orphan = !rev || rev.addr !== t.saddr || rev.port !== t.sport;
      const lastSeenNs = !orphan && rev && rev.lastSeenNs > f.lastSeenNs ? rev.lastSeenNs : f.lastSeenNs;
      const closeFlags = f.flags | (!orphan && rev ? rev.flags : 0);
      out.push({
        proto: protoName(t.proto),
        pod: { ip: t.saddr, port: t.sport },
        remote: { ip: t.daddr, port: t.dport },
        nat: { ip: f.addr, port: f.port },
        lastSeenNs,
        orphan,
        closeFlags,
        closed: natClosed(closeFlags),
      });
    }
    return out;
  }

  async inboundFlows(): Promise<InboundFlow[]> {
    return (await this.maps.inbound.entries()).map(([k, v]) => {
      const t = decodeNatTuple(k);
      return { proto: protoName(t.proto), pod: { ip: t.saddr, port: t.sport }, remote: { ip: t.daddr, port: t.dport }, lastSeenNs: decodeFlowEntry(v) };
    });
  }

  /** Per-reason packet counts, summed over CPUs. Labels come from bpf/include/vnet_maps.h. */
  counters(): Record<string, bigint> {
    const out: Record<string, bigint> = {};
    native()
      .reasons()
      .forEach((label, index) => {
        const raw = this.maps.counters.lookup(encodeU32Key(index));
        out[label] = raw ? sumPerCpuU64(raw) : 0n;
      });
    return out;
  }

  /**
   * Sweep idle SNAT pairs and inbound records (the programs also expire entries they meet; this frees the rest).
   * A pair is dead when both directions are idle longer than its timeout (the protocol's, or the TCP closing one if
   * the pair saw RST or FIN both ways). nowNs: CLOCK_MONOTONIC ns.
   */
  async expireNat(nowNs: bigint = process.hrtime.bigint()): Promise<{ nat: number; inbound: number }> {
    const cfg = this.config();
    if (!cfg) return { nat: 0, inbound: 0 };
    const stale = (last: bigint, proto: number, flags = 0): boolean => nowNs > last && nowNs - last > natPairTimeoutNs(cfg, proto, flags);
    // Forward first: a flow created between the two walks then has a reverse entry we see, never an orphan forward.
    const fwd = new Map((await this.maps.snatFwd.entries()).map(([k, v]) => [k.toString('hex'), { k, t: decodeNatTuple(k), e: decodeNatEntry(v) }]));
    const rev = await this.maps.snatRev.entries();
    const fwdDead: Buffer[] = [];
    const revDead: Buffer[] = [];
    const paired = new Set<string>();
    for (const [rk, rv] of rev) {
      const rt = decodeNatTuple(rk);
      const re = decodeNatEntry(rv);
      const fkey = encodeNatTuple({ saddr: re.addr, daddr: rt.daddr, sport: re.port, dport: rt.dport, proto: rt.proto }).toString('hex');
      const f = fwd.get(fkey);
      const fwdMatches = f !== undefined && f.e.port === rt.sport && f.e.addr === rt.saddr;
      if (fwdMatches) paired.add(fkey);
      const flags = re.flags | (fwdMatches ? f.e.flags : 0);
      if (!stale(re.lastSeenNs, rt.proto, flags) || (fwdMatches && !stale(f.e.lastSeenNs, rt.proto, flags))) continue;
      revDead.push(rk);
      if (fwdMatches) fwdDead.push(f.k);
    }
    for (const [hex, f] of fwd) if (!paired.has(hex) && stale(f.e.lastSeenNs, f.t.proto, f.e.flags)) fwdDead.push(f.k);
    const inboundDead = (await this.maps.inbound.entries()).filter(([k, v]) => stale(decodeFlowEntry(v), decodeNatTuple(k).proto)).map(([k]) => k);
    await this.maps.snatRev.deleteBatch(revDead);
    const nat = await this.maps.snatFwd.deleteBatch(fwdDead);
    const inbound = await this.maps.inbound.deleteBatch(inboundDead);
    return { nat, inbound };
  }

  // ---- lifecycle -----------------------------------------------------------------

  /** Detach every hook of ours, remove the NIC's clsact if we created it, remove all pins. */
  async unloadAll(): Promise<void> {
    const nicIfindex = this.config()?.nicIfindex;
    const createdNicHook = ((this.config()?.ctlFlags ?? 0) & CTL_F.NIC_HOOK_CREATED) !== 0;
    for (const hook of await this.attachedHooks()) {
      if (hook.program === null) continue;
      await native().tcDetach({ ...this.filter(hook.ifindex), direction: hook.direction });
    }
    if (createdNicHook && nicIfindex) await native().tcDestroyHook({ ifindex: nicIfindex, netns: this.netns, direction: 'both' });
    await withPinLock(this.pinRoot, () => {
      for (const dir of ['progs', 'maps']) {
        const d = path.join(this.pinRoot, dir);
        for (const name of safeReaddir(d)) fs.unlinkSync(path.join(d, name));
        rmdirIfPresent(d);
      }
      return Promise.resolve();
    });
    rmdirIfPresent(this.pinRoot);
    this.close();
  }

  /** Release this process's handles. Pins, maps and attachments stay. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const m of Object.values(this.maps)) m.close();
    for (const p of Object.values(this.progs)) p.close();
  }

  // ---- internals -------------------------------------------------------------------

  /** Lab machines: never attach in the machine's own netns (see control/agent/safety.ts). */
  private assertSafeTarget(): void {
    const guarded = process.env.VNET_CNI_LAB === '1' || fs.existsSync(LAB_GUARD_FILE);
    if (!guarded) return;
    const target = fs.statSync(this.netns ?? '/proc/self/ns/net').ino;
    let init = PROC_NET_INIT_INO;
    try {
      init = fs.statSync('/proc/1/ns/net').ino;
    } catch {
      // PID 1's links may be unreadable in sandboxes: the constant still names the init netns.
    }
    if (target === init) throw new UnsafeEnvironmentError("refusing to attach tc programs in the machine's root network namespace on a lab machine");
  }

  private filter(iface: string | number): Omit<TcTarget, 'direction'> {
    const base = { handle: TC_HANDLE, priority: TC_PRIORITY, netns: this.netns };
    return typeof iface === 'number' ? { ...base, ifindex: iface } : { ...base, ifname: iface };
  }

  private nicTarget(ifname?: string): Omit<TcTarget, 'direction'> {
    if (ifname) return this.filter(ifname);
    const nic = this.config()?.nicIfindex;
    if (!nic) throw new DataplaneError('attachNic: no NIC configured and none named');
    return this.filter(nic);
  }

  private async ifindexOf(ifname: string): Promise<number> {
    const link = (await native().listLinks(this.netns)).find((l) => l.name === ifname);
    if (!link) throw new DataplaneUnavailableError(`interface ${ifname} not found`);
    return link.index;
  }

  private programIds(): Map<number, string> {
    return new Map(PROGRAM_NAMES.map((name) => [this.progs[name].info().id, name]));
  }

  private setCtlFlag(flag: number, on: boolean): void {
    const raw = this.maps.config.lookup(encodeU32Key(0));
    if (!raw) return;
    const c = decodeConfig(raw);
    c.ctlFlags = on ? c.ctlFlags | flag : c.ctlFlags & ~flag;
    this.maps.config.update(encodeU32Key(0), encodeConfig(c));
  }

  private async syncCidrs(want: Map<string, number>): Promise<void> {
    const have = await this.cidrs();
    for (const [cidr, flags] of want) if (have.get(cidr) !== flags) this.maps.cidrs.update(encodeLpmKey(cidr), encodeCidrInfo(flags));
    for (const cidr of have.keys()) if (!want.has(cidr)) this.maps.cidrs.delete(encodeLpmKey(cidr));
  }

  /** Write one policy id's trie entries; on failure remove what was written and throw (nothing refers to the id yet). */
  private writePolicyEntries(id: number, c: CompiledDirection): void {
    const cidrKeys: Buffer[] = [];
    const portKeys: Buffer[] = [];
    try {
      for (const e of c.ports) {
        const k = encodePolPortKey({ id, ...e });
        this.maps.polPorts.update(k, encodePolPortVal());
        portKeys.push(k);
      }
      for (const e of c.cidrs) {
        const k = encodePolCidrKey(id, e.cidr);
        this.maps.polCidrs.update(k, encodePolMatch(e.match));
        cidrKeys.push(k);
      }
    } catch (err) {
      for (const k of cidrKeys) this.maps.polCidrs.delete(k);
      for (const k of portKeys) this.maps.polPorts.delete(k);
      const full = isNativeError(err, 'E2BIG') || isNativeError(err, 'ENOSPC') || isNativeError(err, 'ENOMEM');
      throw new DataplaneError(
        `writing ${c.cidrs.length} address and ${c.ports.length} port entries of a policy failed (${(err as Error).message})` +
          (full ? `: the policy maps are full (${MAPS.polCidrs}, ${MAPS.polPorts}); fewer distinct policies per node, or a larger VNET_POL_*_MAX build` : '') +
          '; the endpoint keeps its previous policy',
        { cause: err },
      );
    }
    let cache = policyKeyCache.get(this.pinRoot);
    if (!cache) policyKeyCache.set(this.pinRoot, (cache = new Map<number, PolicyKeys>()));
    cache.set(id, { digest: c.digest.toString('hex'), cidrKeys, portKeys });
  }

  /** Delete ids no endpoint refers to, with their entries, and entries of ids never registered (a writer died). Under the pin lock. */
  private async gcPolicies(registered: Map<number, string>): Promise<void> {
    const used = new Set<number>();
    for (const [, v] of await this.maps.polEps.entries()) {
      const e = decodePolEp(v);
      used.add(e.ingressId).add(e.egressId);
    }
    const dead = [...registered.keys()].filter((id) => !used.has(id));
    const cache = policyKeyCache.get(this.pinRoot) ?? new Map<number, PolicyKeys>();
    const cidrKeys: Buffer[] = [];
    const portKeys: Buffer[] = [];
    const uncached = new Set(dead.filter((id) => cache.get(id)?.digest !== registered.get(id)));
    for (const id of dead) {
      const keys = cache.get(id);
      if (uncached.has(id) || !keys) continue;
      cidrKeys.push(...keys.cidrKeys);
      portKeys.push(...keys.portKeys);
    }
    if (uncached.size > 0) {
      // This process did not write them: find their keys (and any orphans) by walking the tries.
      const doomed = (id: number): boolean => uncached.has(id) || !registered.has(id);
      for (const [k] of await this.maps.polCidrs.entries()) if (doomed(k.readUInt32LE(4))) cidrKeys.push(k);
      for (const [k] of await this.maps.polPorts.entries()) if (doomed(k.readUInt32LE(4))) portKeys.push(k);
    }
    if (dead.length === 0 && cidrKeys.length === 0 && portKeys.length === 0) return;
    await this.maps.polCidrs.deleteBatch(cidrKeys);
    await this.maps.polPorts.deleteBatch(portKeys);
    for (const id of dead) {
      this.maps.polIds.delete(encodePolIdKey(id));
      cache.delete(id);
    }
  }

  /** Drop SNAT pairs and inbound records whose pod IP matches, and policy flows on either side of it. */
  private async purgeFlows(match: (podIp: string) => boolean): Promise<void> {
    const fwdDead: Buffer[] = [];
    const revDead: Buffer[] = [];
    for (const [k, v] of await this.maps.snatFwd.entries()) {
      const t = decodeNatTuple(k);
      if (!match(t.saddr)) continue;
      const e = decodeNatEntry(v);
      fwdDead.push(k);
      revDead.push(encodeNatTuple({ saddr: e.addr, daddr: t.daddr, sport: e.port, dport: t.dport, proto: t.proto }));
    }
    for (const [k, v] of await this.maps.snatRev.entries()) if (match(decodeNatEntry(v).addr)) revDead.push(k);
    const inbound = (await this.maps.inbound.entries()).filter(([k]) => match(decodeNatTuple(k).saddr)).map(([k]) => k);
    await this.maps.snatFwd.deleteBatch(fwdDead);
    await this.maps.snatRev.deleteBatch(revDead);
    await this.maps.inbound.deleteBatch(inbound);
    const polFlows = (await this.maps.polFlows.entries()).filter(([k]) => {
      const f = decodePolFlowKey(k);
      return match(f.local) || match(f.remote);
    });
    await this.maps.polFlows.deleteBatch(polFlows.map(([k]) => k));
  }

  /**
   * After a reload: put the new programs wherever the old ones were attached (atomic replace). A pod veth from a
   * build before to_pod existed gets to_pod on its free egress hook.
   */
  private async reattach(oldIds: Map<number, ProgramName>): Promise<void> {
    for (const link of await native().listLinks(this.netns)) {
      const found: Partial<Record<'ingress' | 'egress', ProgramName | null>> = {};
      for (const direction of ['ingress', 'egress'] as const) {
        const q = await native().tcQuery({ ...this.filter(link.index), direction });
        const name = q ? oldIds.get(q.progId) : undefined;
        found[direction] = q ? (name ?? null) : undefined;
        if (name) await native().tcAttach(this.progs[name], { ...this.filter(link.index), direction, replace: true });
      }
      if (found.ingress === 'from_pod' && found.egress === undefined) {
        await native().tcAttach(this.progs.to_pod, { ...this.filter(link.index), direction: 'egress', replace: true });
      }
    }
  }
}

/** The idle timeout of a NAT pair, as the programs compute it (bpf/lib/nat.h nat_pair_timeout). */
export function natPairTimeoutNs(cfg: ConfigValue, proto: number, flags: number): bigint {
  const min = (a: bigint, b: bigint): bigint => (a < b ? a : b);
  if (proto === 17) return cfg.udpTimeoutNs;
  if (proto !== 6) return cfg.icmpTimeoutNs;
  if (flags & NAT_F.RST) return min(cfg.tcpRstTimeoutNs, cfg.tcpTimeoutNs);
  if ((flags & (NAT_F.FIN_OUT | NAT_F.FIN_IN)) === (NAT_F.FIN_OUT | NAT_F.FIN_IN)) return min(cfg.tcpFinTimeoutNs, cfg.tcpTimeoutNs);
  return cfg.tcpTimeoutNs;
}

// ---- pins -----------------------------------------------------------------------------

interface Loaded {
  maps: Record<MapKey, BpfMap>;
  progs: Record<ProgramName, BpfProgram>;
  /** Program ids that were pinned before a reload replaced them. */
  replacedProgramIds: Map<number, ProgramName>;
}

function ensurePinDirs(root: string): void {
  const parent = path.dirname(root);
  let type: number;
  try {
    type = fs.statfsSync(fs.existsSync(root) ? root : parent).type;
  } catch (err) {
    throw new DataplaneUnavailableError(`pin root ${root}: ${(err as Error).message}`, { cause: err });
  }
  if (type !== BPFFS_MAGIC) throw new DataplaneUnavailableError(`pin root ${root} is not on a bpffs (mount -t bpf bpf /sys/fs/bpf)`);
  for (const dir of [root, path.join(root, 'maps'), path.join(root, 'progs')]) fs.mkdirSync(dir, { recursive: true });
}

function allPinned(root: string): boolean {
  const mapsOk = Object.values(MAPS).every((m) => fs.existsSync(path.join(root, 'maps', m)));
  const progsOk = PROGRAM_NAMES.every((p) => fs.existsSync(path.join(root, 'progs', p)));
  return mapsOk && progsOk;
}

function openPins(root: string): Loaded {
  const maps = {} as Record<MapKey, BpfMap>;
  const progs = {} as Record<ProgramName, BpfProgram>;
  try {
    for (const [key, name] of Object.entries(MAPS) as Array<[MapKey, string]>) maps[key] = native().openPinnedMap(path.join(root, 'maps', name));
    for (const name of PROGRAM_NAMES) progs[name] = native().openPinnedProgram(path.join(root, 'progs', name));
  } catch (err) {
    for (const h of [...Object.values(maps), ...Object.values(progs)]) h.close();
    throw new DataplaneError(`cannot open pins under ${root}: ${(err as Error).message}`, { cause: err });
  }
  return { maps, progs, replacedProgramIds: new Map() };
}

async function loadAndPin(root: string, objectPath = defaultObjectPath()): Promise<Loaded> {
  if (!fs.existsSync(objectPath)) throw new DataplaneUnavailableError(`BPF object ${objectPath} is missing (npm run build:bpf)`);
  let obj;
  try {
    obj = await native().loadObject(objectPath, { pinMapsDir: path.join(root, 'maps') });
  } catch (err) {
    const detail = isNativeError(err) ? err.verifierLog ?? err.libbpfLog : undefined;
    throw new DataplaneError(`loading ${objectPath} failed: ${(err as Error).message}`, { cause: err, details: detail?.slice(-4000) });
  }
  try {
    const maps = {} as Record<MapKey, BpfMap>;
    for (const [key, name] of Object.entries(MAPS) as Array<[MapKey, string]>) maps[key] = obj.map(name);
    const progs = {} as Record<ProgramName, BpfProgram>;
    const replacedProgramIds = new Map<number, ProgramName>();
    for (const name of PROGRAM_NAMES) {
      progs[name] = obj.program(name);
      const pin = path.join(root, 'progs', name);
      if (fs.existsSync(pin)) {
        const old = native().openPinnedProgram(pin);
        replacedProgramIds.set(old.info().id, name);
        old.close();
        fs.unlinkSync(pin);
      }
      progs[name].pin(pin);
    }
    return { maps, progs, replacedProgramIds };
  } finally {
    obj.close();
  }
}

export function defaultObjectPath(): string {
  return path.join(repoRoot(), 'bpf', 'vnet.bpf.o');
}

function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

function rmdirIfPresent(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
