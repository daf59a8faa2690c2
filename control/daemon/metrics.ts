// The daemon's Prometheus metrics (prom-client): CNI operations by verb and
// result with latency histograms, fed by the socket server's onRequest hook;
// the pool, NAT table and dataplane counters, read fresh at every scrape (the
// kernel counts packets, so the map is the source, not a copy of it); and the
// reconcile runs. Served over HTTP on a root-only unix socket, or on loopback
// TCP when asked.
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { chmod, mkdir, unlink } from 'node:fs/promises';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Logger } from 'pino';
import { CniCode, InvalidConfigError } from '../errors.js';
import type { NodeState } from '../store/node-store.js';
import { poolSummary } from '../ipam/allocator.js';
import type { WatchHealth } from '../k8s/reflector.js';

export const DEFAULT_METRICS_SOCKET = '/run/vnet-cni/metrics.sock';

/** Where to serve: a unix socket path, or a loopback host:port. */
export type MetricsAddress = { socketPath: string } | { host: string; port: number };

/** What the metrics read from the dataplane at scrape time (ebpf: all of it; iptables: the policy drops). */
export interface DataplaneStats {
  natEntries?: number;
  /** reason label -> packets, summed over CPUs */
  counters?: Record<string, bigint>;
  /** NetworkPolicy drops per endpoint address and direction (absent: none recorded). */
  policyDrops?: Array<{ ip: string; direction: 'ingress' | 'egress'; packets: bigint }>;
}

export interface MetricsSources {
  /** The node state, as the daemon's DUMP returns it. */
  state(): Promise<NodeState>;
  /** ebpf counters and NAT entries, policy drops (both dataplanes); undefined when the node has no dataplane yet. */
  dataplane?(state: NodeState): Promise<DataplaneStats | undefined>;
  /** The Kubernetes watches' health (daemon with --node-name). */
  watches?(): WatchHealth[];
}

export interface ReconcileReport {
  removed: string[];
  rebuilt: string[];
  strayVeths: string[];
}

const NAT_EXHAUSTED = 'drop-nat-port-exhausted';
const ALLOCATING_VERBS = new Set(['ADD', 'IPAM_ADD']);

/** Parses --metrics-addr: host:port with a loopback host (the endpoint has no authentication). */
export function parseMetricsAddr(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(addr);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || !host || !Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidConfigError(`--metrics-addr must be HOST:PORT, e.g. 127.0.0.1:9153; got '${addr}'`);
  const loopback = host === 'localhost' || host === '::1' || (net.isIPv4(host) && host.startsWith('127.'));
  if (!loopback) throw new InvalidConfigError(`--metrics-addr must be a loopback address (the metrics endpoint has no authentication); got '${host}'`);
  return { host, port };
}

export class DaemonMetrics {
  readonly registry = new Registry();
  private server: http.Server | undefined;
  private socketPath: string | undefined;

  private readonly operations = new Counter({ name: 'vnet_cni_operations_total', help: 'CNI operations served by the daemon, by verb and result', labelNames: ['verb', 'result'], registers: [this.registry] });
  private readonly errors = new Counter({ name: 'vnet_cni_operation_errors_total', help: 'Failed CNI operations by verb and CNI error code', labelNames: ['verb', 'code'], registers: [this.registry] });
  private readonly latency = new Histogram({
    name: 'vnet_cni_operation_duration_seconds', help: 'Time the daemon spent on one CNI operation', labelNames: ['verb', 'result'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [this.registry],
  });
  private readonly ipAllocFailures = new Counter({ name: 'vnet_cni_ip_allocation_failures_total', help: 'ADDs that found no free pod IP (CNI code 100)', registers: [this.registry] });
  private readonly pool = new Gauge({ name: 'vnet_cni_pool_addresses', help: 'Pod IP pool of this node: size, used, free, orphaned', labelNames: ['state'], registers: [this.registry] });
  private readonly endpoints = new Gauge({ name: 'vnet_cni_endpoints', help: 'Pod endpoints in the node state, by dataplane mode and phase', labelNames: ['mode', 'phase'], registers: [this.registry] });
  private readonly natEntries = new Gauge({ name: 'vnet_cni_nat_entries', help: 'SNAT flows in the ebpf NAT table', registers: [this.registry] });
  private readonly natFailures = new Counter({ name: 'vnet_cni_nat_allocation_failures_total', help: 'Packets dropped because no SNAT port was free (ebpf)', registers: [this.registry] });
  private readonly drops = new Counter({ name: 'vnet_cni_dataplane_drops_total', help: 'Packets the ebpf dataplane dropped, by reason', labelNames: ['reason'], registers: [this.registry] });
  private readonly packets = new Counter({ name: 'vnet_cni_dataplane_packets_total', help: 'Packets the ebpf dataplane handled, by reason (drops included)', labelNames: ['reason'], registers: [this.registry] });
  private readonly policyDrops = new Counter({ name: 'vnet_cni_policy_drops_total', help: 'Packets NetworkPolicy dropped, by pod ("namespace/name", or the IP if unknown) and direction', labelNames: ['pod', 'direction'], registers: [this.registry] });
  private readonly reconcileRuns = new Counter({ name: 'vnet_cni_reconcile_runs_total', help: 'Reconcile runs by result', labelNames: ['result'], registers: [this.registry] });
  private readonly reconcileFixes = new Counter({ name: 'vnet_cni_reconcile_fixes_total', help: 'Things reconcile fixed, by kind', labelNames: ['kind'], registers: [this.registry] });
  private readonly memory = new Gauge({ name: 'vnet_cni_daemon_memory_bytes', help: 'The daemon process memory at scrape time: rss, heap_used, heap_total (V8), external and array_buffers (native memory V8 objects hold)', labelNames: ['kind'], registers: [this.registry] });
  private readonly watchAge = new Gauge({ name: 'vnet_cni_kubernetes_watch_age_seconds', help: 'Age of each Kubernetes watch\'s current connection (absent between connections); a watch far older than 10 minutes is stuck', labelNames: ['watch'], registers: [this.registry] });
  private readonly watchLastEvent = new Gauge({ name: 'vnet_cni_kubernetes_watch_last_event_timestamp_seconds', help: 'When each Kubernetes watch last got an event, bookmarks included, or listed (unix time)', labelNames: ['watch'], registers: [this.registry] });
  private readonly watchStreak = new Gauge({ name: 'vnet_cni_kubernetes_watch_failure_streak', help: 'Consecutive failures of each Kubernetes watch (the backoff step; 0 when healthy)', labelNames: ['watch'], registers: [this.registry] });
  private readonly scrapeErrors = new Counter({ name: 'vnet_cni_metrics_source_errors_total', help: 'Scrapes where the node state or the dataplane could not be read', labelNames: ['source'], registers: [this.registry] });

  constructor(
    private readonly sources: MetricsSources,
    private readonly logger?: Logger,
  ) {
    for (const kind of ['removed', 'rebuilt', 'stray_veth']) this.reconcileFixes.inc({ kind }, 0);
    for (const result of ['ok', 'error']) this.reconcileRuns.inc({ result }, 0);
  }

  /** DaemonServer's onRequest hook. */
  readonly onRequest = (verb: string, ok: boolean, seconds: number, code?: number): void => {
    const result = ok ? 'ok' : 'error';
    this.operations.inc({ verb, result });
    this.latency.observe({ verb, result }, seconds);
    if (!ok) this.errors.inc({ verb, code: String(code ?? CniCode.Internal) });
    if (!ok && code === CniCode.IpamExhausted && ALLOCATING_VERBS.has(verb)) this.ipAllocFailures.inc();
  };

  recordReconcile(report: ReconcileReport | Error): void {
    if (report instanceof Error) {
      this.reconcileRuns.inc({ result: 'error' });
      return;
    }
    this.reconcileRuns.inc({ result: 'ok' });
    this.reconcileFixes.inc({ kind: 'removed' }, report.removed.length);
    this.reconcileFixes.inc({ kind: 'rebuilt' }, report.rebuilt.length);
    this.reconcileFixes.inc({ kind: 'stray_veth' }, report.strayVeths.length);
  }

  /** Refresh the scrape-time values, then render the exposition text. */
  async render(): Promise<string> {
    if (this.sources.watches) this.setWatches(this.sources.watches());
    let state: NodeState | undefined;
    try {
      state = await this.sources.state();
      this.setPool(state);
    } catch (err) {
      this.scrapeErrors.inc({ source: 'state' });
      this.logger?.warn({ err }, 'metrics: cannot read the node state');
    }
    if (state && this.sources.dataplane) {
      try {
        const dp = await this.sources.dataplane(state);
        if (dp) this.setDataplane(dp, state);
      } catch (err) {
        this.scrapeErrors.inc({ source: 'dataplane' });
        this.logger?.warn({ err }, 'metrics: cannot read the dataplane maps');
      }
    }
    // Tells a V8 heap that grows (state kept per call) from native memory that grows (the addon, allocator arenas).
    const mem = process.memoryUsage();
    for (const [kind, v] of Object.entries({ rss: mem.rss, heap_used: mem.heapUsed, heap_total: mem.heapTotal, external: mem.external, array_buffers: mem.arrayBuffers })) this.memory.set({ kind }, v);
    return this.registry.metrics();
  }

  private setWatches(watches: WatchHealth[]): void {
    this.watchAge.reset();
    for (const w of watches) {
      if (w.ageSeconds !== undefined) this.watchAge.set({ watch: w.resource }, w.ageSeconds);
      if (w.lastEventAt !== undefined) this.watchLastEvent.set({ watch: w.resource }, Date.parse(w.lastEventAt) / 1000);
      this.watchStreak.set({ watch: w.resource }, w.failures);
    }
  }

  private setPool(state: NodeState): void {
    const s = poolSummary(state.ipam);
    for (const [k, v] of Object.entries({ size: s.size, used: s.used, free: s.free, orphaned: s.orphaned })) this.pool.set({ state: k }, v);
    this.endpoints.reset();
    for (const e of Object.values(state.endpoints)) this.endpoints.inc({ mode: e.mode, phase: e.phase });
  }

  private setDataplane(dp: DataplaneStats, state: NodeState): void {
    if (dp.natEntries !== undefined) this.natEntries.set(dp.natEntries);
    // The kernel's counters are the truth: reset and set, so a daemon restart never double counts.
    this.drops.reset();
    this.packets.reset();
    this.natFailures.reset();
    for (const [reason, n] of Object.entries(dp.counters ?? {})) {
      const v = Number(n);
      this.packets.inc({ reason }, v);
      if (reason.startsWith('drop-')) this.drops.inc({ reason }, v);
      if (reason === NAT_EXHAUSTED) this.natFailures.inc(v);
    }
    // Per endpoint, keyed by address in the kernel: named by the pod that holds it now (the map entry goes with the endpoint).
    this.policyDrops.reset();
    const podOf = new Map(Object.values(state.endpoints).map((e) => [e.ip, e.podName ? `${e.podNamespace ?? 'default'}/${e.podName}` : e.ip]));
    for (const d of dp.policyDrops ?? []) this.policyDrops.inc({ pod: podOf.get(d.ip) ?? d.ip, direction: d.direction }, Number(d.packets));
  }

  async listen(addr: MetricsAddress): Promise<void> {
    const server = http.createServer((req, res) => void this.serve(req, res));
    if ('socketPath' in addr) {
      await mkdir(path.dirname(addr.socketPath), { recursive: true, mode: 0o700 });
      await unlink(addr.socketPath).catch(() => {});
      const oldMask = process.umask(0o177); // born 0600: root only
      try {
        await listenOn(server, (cb) => server.listen(addr.socketPath, cb));
      } finally {
        process.umask(oldMask);
      }
      await chmod(addr.socketPath, 0o600);
      this.socketPath = addr.socketPath;
    } else {
      await listenOn(server, (cb) => server.listen(addr.port, addr.host, cb));
    }
    this.server = server;
  }

  /** The TCP port actually bound (for --metrics-addr 127.0.0.1:0). */
  port(): number | undefined {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a.port : undefined;
  }

  private async serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (req.method !== 'GET' || (req.url !== '/metrics' && req.url !== '/')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics\n');
      return;
    }
    try {
      const body = await this.render();
      res.writeHead(200, { 'content-type': this.registry.contentType }).end(body);
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`);
    }
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    if (this.socketPath) await unlink(this.socketPath).catch(() => {});
  }
}

function listenOn(server: http.Server, start: (cb: () => void) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    start(() => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** ebpf counters and NAT entries through the pinned maps (the daemon already has the addon loaded). */
export async function ebpfStats(state: NodeState): Promise<DataplaneStats | undefined> {
  if (state.node?.mode !== 'ebpf') return undefined;
  const { existsSync } = await import('node:fs');
  const root = state.node.network.bpfRoot;
  if (!existsSync(path.join(root, 'maps'))) return undefined;
  const { EbpfPrograms } = await import('../dataplane/ebpf/programs.js');
  const programs = await EbpfPrograms.open(root);
  try {
    return { natEntries: (await programs.natEntries()).length, counters: programs.counters(), policyDrops: await programs.policyDrops() };
  } finally {
    programs.close();
  }
}

let iptables: import('../dataplane/iptables/index.js').IptablesDataplane | undefined;

/**
 * iptables mode: NetworkPolicy drops per endpoint and direction, the DROP counters closing each
 * endpoint's policy chains (one iptables-save -c per scrape), keyed by the endpoint's address.
 */
export async function iptablesStats(state: NodeState): Promise<DataplaneStats | undefined> {
  if (state.node?.mode !== 'iptables') return undefined;
  if (!iptables) {
    const { IptablesDataplane } = await import('../dataplane/iptables/index.js');
    iptables = new IptablesDataplane();
  }
  const ipOf = new Map(Object.values(state.endpoints).map((e) => [e.hostVeth, e.ip]));
  const drops = await iptables.policyDrops();
  // A chain of a veth no endpoint has (being removed) counts for nobody.
  return { policyDrops: drops.flatMap((d) => (ipOf.has(d.hostVeth) ? [{ ip: ipOf.get(d.hostVeth)!, direction: d.direction, packets: d.packets }] : [])) };
}

/** The dataplane's scrape-time values, whichever the node runs. */
export async function dataplaneStats(state: NodeState): Promise<DataplaneStats | undefined> {
  return state.node?.mode === 'iptables' ? iptablesStats(state) : ebpfStats(state);
}
