// `debug endpoints`: the kernel's endpoint map (ebpf) or bridge ports and
// ebtables rules (iptables) beside the control plane's endpoint records, with
// every disagreement flagged. The diff is a pure function so it is unit-tested.
import { MAPS, decodeEndpoint, decodeEndpointKey } from '../../dataplane/ebpf/layouts.js';
import { ipv4Routes, type LinkInfo } from '../../netlink/ip.js';
import type { EndpointRecord } from '../../store/node-store.js';
import { dumpPinnedMap } from '../bpftool.js';
import { mapPin, type DebugContext } from '../context.js';
import { renderTable } from '../table.js';
import { ebtablesDnatTargets } from './iptables.js';
import { ipv4ToNumber } from '../../../cni/ip.js';

export interface MapEndpoint {
  ip: string;
  ifindex: number;
  podMac: string;
  hostMac: string;
}

export type EndpointIssue =
  | 'in-map-not-in-store'
  | 'in-store-not-in-map'
  | 'ifindex-mismatch'
  | 'pod-mac-mismatch'
  | 'host-mac-mismatch'
  | 'veth-missing'
  | 'route-missing'
  | 'veth-not-on-bridge'
  | 'ebtables-rule-missing'
  | 'ebtables-mac-mismatch';

export interface EndpointRow {
  ip: string;
  store?: Pick<EndpointRecord, 'containerId' | 'ifName' | 'hostVeth' | 'podMac' | 'hostMac' | 'phase' | 'mode' | 'netns'> & {
    podName?: string; podNamespace?: string; podUid?: string; podLabels?: Record<string, string>;
  };
  map?: MapEndpoint & { ifname?: string };
  /** the store's veth as the kernel has it */
  veth?: { ifindex: number; master?: string };
  issues: { kind: EndpointIssue; detail: string }[];
}

export interface EndpointsView {
  mode: string | undefined;
  endpoints: EndpointRow[];
  issueCount: number;
}

export interface EndpointFacts {
  mode: 'iptables' | 'ebpf' | undefined;
  records: EndpointRecord[];
  links: LinkInfo[];
  /** ebpf: the decoded endpoint map (undefined when nothing is pinned) */
  map?: MapEndpoint[];
  /** ebpf: the host's /32 routes, pod IP -> device */
  routes?: Map<string, string>;
  /** iptables: the bridge name and the ebtables DNAT rules, pod IP -> MAC */
  bridge?: string;
  ebtables?: Map<string, string>;
}

const sameMac = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase();

function ipOrder(a: string, b: string): number {
  return ipv4ToNumber(a) - ipv4ToNumber(b);
}

export function diffEndpoints(f: EndpointFacts): EndpointRow[] {
  const rows = new Map<string, EndpointRow>();
  const row = (ip: string): EndpointRow => {
    let r = rows.get(ip);
    if (!r) rows.set(ip, (r = { ip, issues: [] }));
    return r;
  };
  const byName = new Map(f.links.map((l) => [l.ifname, l]));
  const byIndex = new Map(f.links.map((l) => [l.ifindex, l]));
  for (const rec of f.records) {
    const r = row(rec.ip);
    r.store = {
      containerId: rec.containerId, ifName: rec.ifName, hostVeth: rec.hostVeth, podMac: rec.podMac, hostMac: rec.hostMac,
      phase: rec.phase, mode: rec.mode, netns: rec.netns,
      ...(rec.podName ? { podName: rec.podName } : {}), ...(rec.podNamespace ? { podNamespace: rec.podNamespace } : {}),
      ...(rec.podUid ? { podUid: rec.podUid } : {}), ...(rec.podLabels ? { podLabels: rec.podLabels } : {}),
    };
    const link = byName.get(rec.hostVeth);
    if (link) r.veth = { ifindex: link.ifindex, ...(link.master ? { master: link.master } : {}) };
    else r.issues.push({ kind: 'veth-missing', detail: `host veth ${rec.hostVeth} does not exist` });
  }
  for (const m of f.map ?? []) {
    const r = row(m.ip);
    const ifname = byIndex.get(m.ifindex)?.ifname;
    r.map = { ...m, ...(ifname ? { ifname } : {}) };
  }
  for (const r of rows.values()) {
    const s = r.store;
    if (f.mode === 'ebpf' && f.map) {
      if (r.map && !s) r.issues.push({ kind: 'in-map-not-in-store', detail: `the endpoint map sends ${r.ip} to ifindex ${r.map.ifindex} (${r.map.ifname ?? 'no such interface'}) but no pod owns it` });
      if (s && !r.map && s.mode === 'ebpf' && s.phase === 'ready') r.issues.push({ kind: 'in-store-not-in-map', detail: `pod ${s.podNamespace ?? '?'}/${s.podName ?? s.containerId} is ready but the endpoint map has no entry: inbound packets for ${r.ip} are not forwarded` });
      if (s && r.map) {
        if (r.veth && r.map.ifindex !== r.veth.ifindex) r.issues.push({ kind: 'ifindex-mismatch', detail: `the map says ifindex ${r.map.ifindex} (${r.map.ifname ?? 'no such interface'}), ${s.hostVeth} is ifindex ${r.veth.ifindex}` });
        if (!sameMac(r.map.podMac, s.podMac)) r.issues.push({ kind: 'pod-mac-mismatch', detail: `the map has pod MAC ${r.map.podMac}, the store ${s.podMac}` });
        if (!sameMac(r.map.hostMac, s.hostMac)) r.issues.push({ kind: 'host-mac-mismatch', detail: `the map has host MAC ${r.map.hostMac}, the store ${s.hostMac}` });
      }
    }
    if (f.mode === 'ebpf' && f.routes && s && s.mode === 'ebpf' && s.phase === 'ready' && r.veth && f.routes.get(r.ip) !== s.hostVeth) {
      const dev = f.routes.get(r.ip);
      r.issues.push({ kind: 'route-missing', detail: `no /32 route for ${r.ip} via ${s.hostVeth}${dev ? ` (it points at ${dev})` : ''}: the node's own traffic to the pod (kubelet probes, replies from the host) leaves by the NIC instead` });
    }
    if (f.mode === 'iptables' && s && s.mode === 'iptables' && s.phase === 'ready') {
      if (r.veth && f.bridge && r.veth.master !== f.bridge) r.issues.push({ kind: 'veth-not-on-bridge', detail: `${s.hostVeth} is not a port of ${f.bridge}` });
      const mac = f.ebtables?.get(r.ip);
      if (f.ebtables && mac === undefined) r.issues.push({ kind: 'ebtables-rule-missing', detail: `no ebtables DNAT rule for ${r.ip}: the fabric's frames never reach the pod` });
      else if (mac !== undefined && !sameMac(mac, s.podMac)) r.issues.push({ kind: 'ebtables-mac-mismatch', detail: `ebtables rewrites ${r.ip} to ${mac}, the pod's MAC is ${s.podMac}` });
    }
  }
  return [...rows.values()].sort((a, b) => ipOrder(a.ip, b.ip));
}

export async function readEndpointMap(ctx: DebugContext): Promise<MapEndpoint[] | undefined> {
  if (!ctx.pinned) return undefined;
  const raw = await dumpPinnedMap(mapPin(ctx, MAPS.endpoints));
  return raw.filter((e) => e.value).map((e) => ({ ip: decodeEndpointKey(e.key), ...pickEndpoint(e.value!) }));
}

function pickEndpoint(b: Buffer): Omit<MapEndpoint, 'ip'> {
  const v = decodeEndpoint(b);
  return { ifindex: v.ifindex, podMac: v.podMac, hostMac: v.hostMac };
}

/** The host's /32 routes (pod IP -> device), as the ebpf dataplane installs them. */
async function hostRoutes(): Promise<Map<string, string>> {
  const routes = await ipv4Routes();
  return new Map(routes.filter((r) => r.scope === 'link' && r.dev && r.dst.endsWith('/32')).map((r) => [r.dst.slice(0, -3), r.dev!]));
}

export async function collectEndpoints(ctx: DebugContext): Promise<EndpointsView> {
  const { state } = ctx.snapshot;
  const mode = state.node?.mode;
  const facts: EndpointFacts = { mode, records: Object.values(state.endpoints), links: ctx.links };
  if (mode === 'ebpf' || (mode === undefined && ctx.pinned)) facts.map = await readEndpointMap(ctx);
  if (mode === 'ebpf') facts.routes = await hostRoutes();
  if (mode === 'iptables') {
    facts.bridge = state.node!.network.bridge;
    facts.ebtables = await ebtablesDnatTargets();
  }
  const endpoints = diffEndpoints(facts);
  return { mode, endpoints, issueCount: endpoints.reduce((n, r) => n + r.issues.length, 0) };
}

/** Pod labels as `k=v,k=v`, bounded so one pod cannot stretch the table. */
function labelsText(labels: Record<string, string> | undefined): string {
  const text = Object.entries(labels ?? {}).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}=${v}`).join(',');
  if (text === '') return '-';
  return text.length > 40 ? `${text.slice(0, 39)}~` : text;
}

export function renderEndpoints(v: EndpointsView): string {
  const headers = ['IP', 'POD', 'CONTAINER', 'VETH', 'PHASE', 'MAP IFINDEX', 'MAP IFNAME', 'POD MAC', 'HOST MAC', 'STATUS', 'POD UID', 'LABELS'];
  const rows = v.endpoints.map((r) => [
    r.ip,
    r.store ? `${r.store.podNamespace ?? '-'}/${r.store.podName ?? '-'}` : undefined,
    r.store ? r.store.containerId.slice(0, 12) : undefined,
    r.store?.hostVeth,
    r.store?.phase,
    r.map?.ifindex,
    r.map ? r.map.ifname ?? '(gone)' : undefined,
    r.map?.podMac ?? r.store?.podMac,
    r.map?.hostMac ?? r.store?.hostMac,
    r.issues.length ? r.issues.map((i) => i.kind).join(',') : 'ok',
    r.store ? r.store.podUid?.slice(0, 8) ?? '-' : undefined,
    r.store ? labelsText(r.store.podLabels) : undefined,
  ]);
  let out = `endpoints (mode: ${v.mode ?? 'none'})\n` + renderTable(headers, rows);
  const details = v.endpoints.flatMap((r) => r.issues.map((i) => `  ! ${r.ip} ${i.kind}: ${i.detail}\n`));
  out += details.length ? `issues (${details.length}):\n${details.join('')}` : 'issues: none\n';
  return out;
}
