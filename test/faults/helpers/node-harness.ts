// Shared by the kill -9 / storm / soak fault tests: processes that can be
// killed as a whole group at any moment (a CNI call, the node daemon), the
// daemon's resource use, a full view of one lab VM (store, pod netns
// addresses, links, rules, BPF map, pins) and the invariants every test
// checks against its own record of which pods are alive.
import http from 'node:http';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Lab } from '../../../lab/lab.js';
import { vmExecArgv } from '../../../lab/vm-exec.js';
import { waitForLine } from '../../../lab/children.js';
import { run } from '../../../control/exec.js';
import { hostVethName } from '../../../control/netlink/veth.js';
import { allocations } from '../../../control/ipam/allocator.js';
import { native } from '../../../native/index.js';
import { MAPS, decodeEndpointKey } from '../../../control/dataplane/ebpf/layouts.js';
import { EB_PRE_CHAIN } from '../../../control/dataplane/iptables/rules.js';
import { CNI_PATH, FAULTY_PLUGIN, REPO, pluginStdin, type Mode } from '../../lab/helpers/cni-harness.js';

export const DAEMON_SOCKET = '/run/vnet-cni/daemon.sock';

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function inParallel<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!, i);
      }
    }),
  );
  return out;
}

// ---- processes that can be killed as a group -------------------------------

export interface ProcResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface GroupProc {
  readonly pid: number;
  readonly child: ChildProcess;
  readonly done: Promise<ProcResult>;
  /** SIGKILL the whole process group; true if the leader was still running. */
  kill(): boolean;
  /** SIGSTOP / SIGCONT the whole process group. */
  pause(): void;
  resume(): void;
  exited(): boolean;
}

/**
 * Start argv as the leader of a new process group (as a runtime or systemd
 * would start a plugin or a daemon), so a kill takes its children (ip,
 * iptables, ebtables...) with it. Bounded by timeoutMs.
 */
export function spawnGroup(argv: readonly string[], opts: { env?: Record<string, string>; input?: string; timeoutMs?: number } = {}): GroupProc {
  const [file, ...args] = argv;
  const started = Date.now();
  const child = spawn(file!, args, { detached: true, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (b: Buffer) => out.push(b));
  child.stderr.on('data', (b: Buffer) => err.push(b));
  child.stdin.on('error', () => {});
  if (opts.input !== undefined) child.stdin.end(opts.input);
  let finished = false;
  const killGroup = (): boolean => {
    const wasRunning = !finished;
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      /* the group is gone */
    }
    return wasRunning;
  };
  const timer = opts.timeoutMs ? setTimeout(killGroup, opts.timeoutMs) : undefined;
  const done = new Promise<ProcResult>((resolve) => {
    child.on('error', (e) => {
      finished = true;
      resolve({ code: 127, signal: null, stdout: '', stderr: String(e), ms: Date.now() - started });
    });
    child.on('exit', () => {
      finished = true;
    });
    child.on('close', (code, signal) => {
      finished = true;
      if (timer) clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), ms: Date.now() - started });
    });
  });
  const signal = (sig: NodeJS.Signals) => (): void => {
    try {
      process.kill(-child.pid!, sig);
    } catch {
      /* the group is gone */
    }
  };
  return { pid: child.pid!, child, done, kill: killGroup, pause: signal('SIGSTOP'), resume: signal('SIGCONT'), exited: () => finished };
}

// ---- CNI calls run like a runtime runs them ---------------------------------

export interface PodRef {
  containerId: string;
  ifName: string;
  netns: string;
  name: string;
}

export type Verb = 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS' | 'VERSION';

/**
 * bin/azure-vnet inside a VM, in its own process group: CNI_* env, the config on stdin.
 * With `faultEnv` (VNET_CNI_TEST_CRASH_AT / _PAUSE_AT, see test/support/fault-hooks.ts)
 * the test-only plugin entry runs instead, in-process (never forwarded to a daemon).
 */
export function pluginCall(lab: Lab, vm: string, verb: Verb, conflist: Record<string, unknown>, pod?: PodRef, valid?: PodRef[], faultEnv?: Record<string, string>): GroupProc {
  const env: Record<string, string> = { CNI_COMMAND: verb, CNI_PATH, ...faultEnv };
  if (pod) {
    Object.assign(env, { CNI_CONTAINERID: pod.containerId, CNI_NETNS: pod.netns, CNI_IFNAME: pod.ifName, CNI_ARGS: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod.name}` });
  }
  const extra = valid ? { 'cni.dev/valid-attachments': valid.map((p) => ({ containerID: p.containerId, ifname: p.ifName })) } : {};
  const argv = faultEnv ? [process.execPath, FAULTY_PLUGIN] : [path.join(REPO, 'bin', 'azure-vnet')];
  return spawnGroup(vmExecArgv(lab.names, vm, argv), { env, input: pluginStdin(conflist, 0, extra), timeoutMs: 180_000 });
}

/** The IP of a successful ADD result, or undefined. */
export function resultIp(r: ProcResult): string | undefined {
  if (r.code !== 0) return undefined;
  try {
    const res = JSON.parse(r.stdout) as { ips?: { address?: string }[] };
    return res.ips?.[0]?.address?.split('/')[0];
  } catch {
    return undefined;
  }
}

/** The CNI error code a failed call printed, if any. */
export function errorCode(r: ProcResult): number | undefined {
  try {
    const code = (JSON.parse(r.stdout) as { code?: unknown }).code;
    return typeof code === 'number' ? code : undefined;
  } catch {
    return undefined;
  }
}

// ---- the node daemon ---------------------------------------------------------

export interface DaemonUsage {
  rssKiB: number;
  /** The process's own pages (heap, arenas, stacks); RSS minus these is file-backed (the node binary, libraries). */
  anonKiB: number;
  fds: number;
  /** V8's used heap from the daemon's metrics (vnet_cni_daemon_memory_bytes), when it answered. */
  heapUsedKiB?: number;
  /** V8's committed heap (part of the anonymous RSS). */
  heapTotalKiB?: number;
}

/** `vnetctl daemon` in a lab VM, as its own process group; kill -9 and restart at will. */
export class VmDaemon {
  private proc: GroupProc | undefined;
  starts = 0;

  constructor(
    readonly lab: Lab,
    readonly vm: string,
    readonly socket = DAEMON_SOCKET,
  ) {}

  get pid(): number | undefined {
    return this.proc && !this.proc.exited() ? this.proc.pid : undefined;
  }

  async start(): Promise<void> {
    if (this.pid) throw new Error(`daemon in ${this.vm} already runs (pid ${this.pid})`);
    const argv = vmExecArgv(this.lab.names, this.vm, [process.execPath, path.join(REPO, 'dist', 'control', 'cli', 'vnetctl.js'), 'daemon', '--socket', this.socket]);
    const proc = spawnGroup(argv);
    this.proc = proc;
    // Reconcile runs before READY: a restarted daemon is consistent once it prints it.
    await waitForLine(proc.child, /^READY /, 120_000, `vnetctl daemon in ${this.vm}`);
    this.starts++;
    this.idleFds = readdirSync(`/proc/${proc.pid}/fd`).length;
  }

  /** Open fds of the idle daemon right after READY (its listening sockets, log, lock-free store). */
  idleFds = 0;

  /**
   * Wait (bounded) until the daemon is busy: more fds than when idle means a
   * client connection or a child's pipes, i.e. a call in progress.
   */
  async waitBusy(timeoutMs = 3000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const pid = this.pid;
      if (!pid) return false;
      try {
        if (readdirSync(`/proc/${pid}/fd`).length > this.idleFds) return true;
      } catch {
        return false;
      }
      await sleep(5);
    }
    return false;
  }

  /** SIGKILL the daemon's process group; resolves once it is gone. true if it was running. */
  async kill9(): Promise<boolean> {
    const proc = this.proc;
    if (!proc) return false;
    const landed = proc.kill();
    await proc.done;
    return landed;
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exited()) return;
    try {
      process.kill(proc.pid, 'SIGTERM');
    } catch {
      /* gone */
    }
    const timer = setTimeout(() => proc.kill(), 10_000);
    await proc.done;
    clearTimeout(timer);
  }

  /** Resident memory and open fds of the daemon process (the node process itself: vm-exec execs it). */
  usage(): DaemonUsage {
    const pid = this.pid;
    if (!pid) throw new Error(`daemon in ${this.vm} is not running`);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { rssKiB: kib('VmRSS'), anonKiB: kib('RssAnon'), fds: readdirSync(`/proc/${pid}/fd`).length };
  }

  /** Usage once the daemon is idle: fds settle when the last client connection is closed. */
  async settledUsage(): Promise<DaemonUsage> {
    let prev = this.usage();
    for (let i = 0; i < 50; i++) {
      await sleep(200);
      const cur = this.usage();
      if (cur.fds === prev.fds) return this.afterGc();
      prev = cur;
    }
    return this.afterGc();
  }

  /** Usage after the daemon's forced full GC (SIGUSR2), so the heap figure is live objects only. */
  private async afterGc(): Promise<DaemonUsage> {
    const pid = this.pid;
    if (pid) {
      try {
        process.kill(pid, 'SIGUSR2');
        await sleep(300);
      } catch {
        // gone: usage() says so
      }
    }
    return this.withHeap(this.usage());
  }

  /** Adds V8's used and committed heap from a metrics scrape (fds were read before it, so its connection is not counted). */
  private async withHeap(u: DaemonUsage): Promise<DaemonUsage> {
    const text = await new Promise<string>((resolve) => {
      const req = http.get({ socketPath: path.join(this.lab.vmPaths(this.vm).run, 'metrics.sock'), path: '/metrics', timeout: 5000, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(body));
        res.on('error', () => resolve(''));
      });
      req.on('error', () => resolve(''));
      req.on('timeout', () => req.destroy());
    });
    const kib = (kind: string): number | undefined => {
      const m = new RegExp(`^vnet_cni_daemon_memory_bytes\\{kind="${kind}"\\} (\\d+)`, 'm').exec(text);
      return m ? Math.round(Number(m[1]) / 1024) : undefined;
    };
    const used = kib('heap_used');
    const total = kib('heap_total');
    return used !== undefined && total !== undefined ? { ...u, heapUsedKiB: used, heapTotalKiB: total } : u;
  }
}

// ---- what a VM really has ------------------------------------------------------

interface StoreEndpoint {
  containerId: string;
  ifName: string;
  netns: string;
  ip: string;
  hostVeth: string;
  podMac: string;
  phase: string;
  mode: string;
}

export interface NodeView {
  endpoints: Record<string, StoreEndpoint>;
  /** IPAM holdings: ip -> owner key */
  holdings: { ip: string; key: string }[];
  hostVeths: string[];
  /** IPv4 addresses found in each pod netns of the VM (by netns path) */
  podAddrs: Map<string, string[]>;
  /** iptables mode: per-pod ebtables dnat rules (ip, mac) */
  ebDnat: { ip: string; mac: string }[];
  /** iptables/ebtables lines of ours (VNET-*) */
  vnetRules: number;
  bridge: boolean;
  /** ebpf: IPs in the pinned endpoints map (undefined: no pins) */
  bpfEndpoints: string[] | undefined;
  /** pin files under the VM's bpffs, relative */
  pins: string[];
  /** ebpf: /32 pod routes on host veths */
  podRoutes: string[];
}

function normMac(mac: string): string {
  return mac
    .split(':')
    .map((x) => x.toLowerCase().padStart(2, '0'))
    .join(':');
}

function walk(dir: string, base = dir): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p, base));
    else out.push(path.relative(base, p));
  }
  return out.sort();
}

export async function nodeView(lab: Lab, vm: string): Promise<NodeView> {
  const paths = lab.vmPaths(vm);
  let state: { endpoints?: Record<string, StoreEndpoint>; ipam?: unknown } = {};
  try {
    state = JSON.parse(readFileSync(path.join(paths.varLib, 'state.json'), 'utf8')) as typeof state;
  } catch {
    state = {};
  }
  const holdings = state.ipam ? allocations(state.ipam as never).map((a) => ({ ip: a.ip, key: `${a.owner.containerId}/${a.owner.ifName}` })) : [];
  const kernel = await lab.execVm(vm, [
    'sh',
    '-c',
    `ip -o link show type veth; echo '#RULES'; iptables-save 2>/dev/null | grep -c 'VNET-'; ebtables -t nat -L 2>/dev/null | grep -c 'VNET-'; echo '#EB'; ebtables -t nat -L ${EB_PRE_CHAIN} 2>/dev/null; echo '#BR'; ip -o link show azure0 2>/dev/null; echo '#ROUTES'; ip -4 -o route show scope link`,
  ]);
  const [linksPart = '', rest1 = ''] = kernel.stdout.split('#RULES');
  const [rulesPart = '', rest2 = ''] = rest1.split('#EB');
  const [ebPart = '', rest3 = ''] = rest2.split('#BR');
  const [brPart = '', routesPart = ''] = rest3.split('#ROUTES');
  const hostVeths = [...new Set([...linksPart.matchAll(/\d+: (azv[0-9a-f]{12})[@:]/g)].map((m) => m[1]!))].sort();
  const vnetRules = rulesPart.trim().split('\n').map(Number).filter(Number.isFinite).reduce((a, b) => a + b, 0);
  const ebDnat = [...ebPart.matchAll(/--ip-dst (\S+) .*--to-dst (\S+)/g)].map((m) => ({ ip: m[1]!, mac: normMac(m[2]!) }));
  const podRoutes = [...routesPart.matchAll(/^(\d+\.\d+\.\d+\.\d+) dev (azv[0-9a-f]{12})/gm)].map((m) => m[1]!).sort();

  const podNs = lab.podNetns(vm);
  const podAddrs = new Map<string, string[]>();
  if (podNs.length) {
    const script = podNs.map((ns) => `echo "#NS ${ns}"; ip -n ${path.basename(ns)} -4 -o addr show 2>/dev/null`).join('; ');
    const res = await run(['sh', '-c', script], { timeoutMs: 120_000 });
    for (const block of res.stdout.split('#NS ').slice(1)) {
      const [ns = '', ...lines] = block.split('\n');
      const ips = lines.map((l) => /inet (\d+\.\d+\.\d+\.\d+)\//.exec(l)?.[1]).filter((x): x is string => x !== undefined && !x.startsWith('127.'));
      podAddrs.set(ns.trim(), ips);
    }
  }

  const pinRoot = path.join(paths.bpffs, 'vnet-cni');
  const pins = walk(pinRoot);
  let bpfEndpoints: string[] | undefined;
  const mapPin = pins.find((p) => p.endsWith(`maps/${MAPS.endpoints}`));
  if (mapPin) {
    const map = native().openPinnedMap(path.join(pinRoot, mapPin));
    try {
      bpfEndpoints = (await map.entries()).map(([k]) => decodeEndpointKey(k)).sort();
    } finally {
      map.close();
    }
  }
  return { endpoints: state.endpoints ?? {}, holdings, hostVeths, podAddrs, ebDnat, vnetRules, bridge: brPart.includes('azure0'), bpfEndpoints, pins, podRoutes };
}

// ---- invariants -----------------------------------------------------------------

export interface LivePod extends PodRef {
  ip: string;
}

export const keyOf = (p: Pick<PodRef, 'containerId' | 'ifName'>): string => `${p.containerId}/${p.ifName}`;

function dupes(xs: string[]): string[] {
  const seen = new Set<string>();
  return [...new Set(xs.filter((x) => (seen.has(x) ? true : (seen.add(x), false))))];
}

function sameSet(a: string[], b: string[]): boolean {
  const x = [...a].sort();
  const y = [...b].sort();
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

function diff(label: string, got: string[], want: string[]): string | undefined {
  if (sameSet(got, want)) return undefined;
  const extra = got.filter((g) => !want.includes(g));
  const missing = want.filter((w) => !got.includes(w));
  return `${label}: extra [${extra.slice(0, 6).join(' ')}]${extra.length > 6 ? ` (+${extra.length - 6})` : ''}, missing [${missing.slice(0, 6).join(' ')}]${missing.length > 6 ? ` (+${missing.length - 6})` : ''}`;
}

/**
 * Always true, crash or not: no IP held twice in the store, no IP present in
 * two pod netns, and every live pod's netns has exactly the IP it was given.
 */
export function uniquenessProblems(view: NodeView, live: Iterable<LivePod>): string[] {
  const problems: string[] = [];
  const d1 = dupes(view.holdings.map((h) => h.ip));
  if (d1.length) problems.push(`store: IPs held twice: ${d1.join(' ')}`);
  const d2 = dupes(view.holdings.map((h) => h.key));
  if (d2.length) problems.push(`store: owners holding two IPs: ${d2.join(' ')}`);
  const d3 = dupes(Object.values(view.endpoints).map((e) => e.ip));
  if (d3.length) problems.push(`store: endpoints sharing an IP: ${d3.join(' ')}`);
  const d4 = dupes([...view.podAddrs.values()].flat());
  if (d4.length) problems.push(`kernel: IPs present in two pod netns: ${d4.join(' ')}`);
  for (const p of live) {
    const got = view.podAddrs.get(p.netns);
    if (!got || got.length !== 1 || got[0] !== p.ip) problems.push(`kernel: pod ${p.name} should have ${p.ip}, its netns has [${got?.join(' ') ?? 'no netns'}]`);
    const ep = view.endpoints[keyOf(p)];
    if (!ep || ep.ip !== p.ip) problems.push(`store: pod ${p.name} should have an endpoint with ${p.ip}, has ${ep ? ep.ip : 'none'}`);
  }
  return problems;
}

/**
 * After a GC that listed exactly the live pods: nothing else is left. The
 * store holds exactly their endpoints (ready) and IPs, the VM exactly their
 * veths, and the dataplane exactly their rules / map entries; with no pod
 * left, no node-wide state either (bridge, chains, pins).
 */
export function leakProblems(view: NodeView, live: LivePod[], mode: Mode, expectedPins?: string[]): string[] {
  const problems: string[] = [];
  const keys = live.map(keyOf);
  const ips = live.map((p) => p.ip);
  const push = (p: string | undefined): void => void (p && problems.push(p));
  push(diff('store endpoints', Object.keys(view.endpoints), keys));
  const notReady = Object.entries(view.endpoints).filter(([, e]) => e.phase !== 'ready').map(([k, e]) => `${k}:${e.phase}`);
  if (notReady.length) problems.push(`store: endpoints not ready after GC: ${notReady.join(' ')}`);
  push(diff('store IP holdings (owners)', view.holdings.map((h) => h.key), keys));
  push(diff('store IP holdings (IPs)', view.holdings.map((h) => h.ip), ips));
  push(diff('host veths', view.hostVeths, live.map((p) => hostVethName(p.containerId, p.ifName))));
  if (mode === 'iptables') {
    const podMac = (p: LivePod): string => normMac(view.endpoints[keyOf(p)]?.podMac ?? '?');
    push(diff('ebtables per-pod dnat rules', view.ebDnat.map((r) => `${r.ip}>${r.mac}`), live.map((p) => `${p.ip}>${podMac(p)}`)));
    if (live.length === 0 && view.vnetRules > 0) problems.push(`${view.vnetRules} VNET iptables/ebtables lines left with no pod`);
    if (live.length === 0 && view.bridge) problems.push('bridge azure0 left with no pod');
    if (live.length > 0 && (!view.bridge || view.vnetRules === 0)) problems.push('live pods but no bridge or node rules');
  } else {
    push(diff('BPF endpoints map', view.bpfEndpoints ?? [], ips));
    push(diff('pod /32 routes', view.podRoutes, ips));
    if (live.length === 0 && view.pins.length > 0) problems.push(`pins left with no pod: ${view.pins.join(' ')}`);
    if (live.length > 0 && expectedPins) push(diff('pins', view.pins, expectedPins));
  }
  return problems;
}

/** Ping every ip from a netns (in parallel inside it); returns the ones that never answered (3 tries). */
export async function unreachable(fromNetns: string, ips: string[]): Promise<string[]> {
  let pending = [...ips];
  for (let attempt = 0; attempt < 3 && pending.length; attempt++) {
    const script = `for ip in ${pending.join(' ')}; do (ping -n -q -c 1 -W 2 $ip >/dev/null 2>&1 || echo $ip) & done; wait`;
    const res = await run(['nsenter', `--net=${fromNetns}`, '--', 'sh', '-c', script], { timeoutMs: 60_000 });
    pending = res.stdout.split('\n').map((s) => s.trim()).filter(Boolean);
  }
  return pending;
}

/**
 * Pods on an iptables-mode bridge see each other's real MACs, so a pod that
 * gets an IP freed shortly before must announce itself (the dataplane sends a
 * gratuitous ARP at attach). Of the unreachable IPs, returns those the
 * neighbour's cache maps to a MAC other than the pod's: a missed announcement
 * rather than a broken endpoint, reported as its own failure.
 */
export async function staleNeighbours(fromNetns: string, ips: string[], view: NodeView): Promise<string[]> {
  if (!ips.length) return [];
  const res = await run(['nsenter', `--net=${fromNetns}`, '--', 'ip', '-4', 'neigh', 'show'], { timeoutMs: 30_000 });
  const macOf = new Map(Object.values(view.endpoints).map((e) => [e.ip, normMac(e.podMac)]));
  const stale: string[] = [];
  for (const ip of ips) {
    const m = new RegExp(`^${ip.replaceAll('.', '\\.')} .*lladdr (\\S+)`, 'm').exec(res.stdout);
    if (m && macOf.has(ip) && normMac(m[1]!) !== macOf.get(ip)) stale.push(ip);
  }
  return stale;
}
