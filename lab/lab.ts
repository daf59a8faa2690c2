// One simulated Azure VNet on this machine (see /work/shared/VNET-FABRIC.md
// and docs/lab.md). Lab.up() builds it from a spec; every change made while
// pods run goes through this class, which keeps vnet.json and the kernel in
// step; down() removes every namespace, process, file and pin it made.
import { closeSync, existsSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { run, type ExecResult } from '../control/exec.js';
import { LabError, LabSpecError } from './errors.js';
import { LabNames, STATE_ROOT, checkPodName, netnsPath, newPrefix, ownerAlive, ownerRecord, readOwner, type OwnerRecord } from './naming.js';
import { WIRESERVER_IP, gatewayOf, validateSpec, type LabSpec, type LoadBalancerSpec, type NsgRule, type ResolvedLabSpec, type ResolvedVm } from './spec.js';
import { readSpecFile, writeSpecFile } from './spec-file.js';
import { PEER_LINKS, fabricBatch, fabricSysctls, peerHostBatch, secondaryRoute, vmBatch } from './topology.js';
import { fabricRuleset, nicIpElement, nsgScript, publicIpCommands } from './fabric-nft.js';
import { ensureRootBpffs, execInVm, prepareVmDirs, vmPaths, type VmExecOptions, type VmPaths } from './vm-exec.js';
import { startChild, stopChild, waitForLine, pollUntil } from './children.js';
import { adminRequest, type WireserverStatus } from './wire-admin.js';
import type { WireFault } from './wire-fault.js';
import type { LbHealth } from './lb-prober.js';
import { labNetns, teardownPrefix, teardownPrefixSync } from './teardown.js';
import { sweepStaleLabs } from './sweep.js';
import { parseCidr } from './ipv4.js';

/** Marks this machine as a lab machine: the plugin then refuses to run in the root netns (control/agent/safety.ts). */
export const LAB_GUARD_FILE = path.join(STATE_ROOT, '.guard');

export interface LabUpOptions {
  /** default: vl<pid>, vl<pid>x<n> for later labs of the same process */
  prefix?: string;
  /** tear the lab down on SIGINT/SIGTERM and at process exit (default true) */
  handleSignals?: boolean;
  /** remove crashed labs' leftovers first (default true) */
  sweep?: boolean;
  /** recorded in owner.json; `vnetctl lab down` only stops 'keeper' owners */
  ownerKind?: OwnerRecord['kind'];
  /** progress lines (default: silent) */
  log?: (line: string) => void;
}

export interface VmInfo {
  name: string;
  /** netns name; its path is /run/netns/<name> */
  netns: string;
  netnsPath: string;
  mac: string;
  primaryIp: string;
  publicIp: string | undefined;
  secondaryIps: string[];
  /** secondary IP -> public IP */
  publicIps: Record<string, string>;
  subnet: string;
  prefixLen: number;
  gateway: string;
}

export interface NsExecOptions {
  input?: string;
  env?: Record<string, string>;
  timeoutMs?: number;
}

const CONCURRENCY = 8;

export class Lab {
  readonly names: LabNames;
  /** milliseconds per bring-up phase (for benchmarks) */
  readonly timings: Record<string, number> = {};
  private current: ResolvedLabSpec;
  private wireserver: ChildProcess | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private downPromise: Promise<void> | undefined;

  private constructor(
    names: LabNames,
    spec: ResolvedLabSpec,
    /** true if this process made the lab (and must tear it down) */
    readonly owned: boolean,
  ) {
    this.names = names;
    this.current = spec;
  }

  // ---- lifecycle -------------------------------------------------------

  /** Build a lab from `spec`. On any failure everything made so far is removed. */
  static async up(spec: LabSpec, options: LabUpOptions = {}): Promise<Lab> {
    const log = options.log ?? (() => {});
    const resolved = validateSpec(spec);
    if (options.sweep !== false) {
      const swept = await sweepStaleLabs();
      if (swept.length) log(`swept stale labs: ${swept.join(', ')}`);
    }
    const names = new LabNames(options.prefix ?? newPrefix());
    if (existsSync(names.stateDir) || labNetns(names).length > 0) {
      const owner = readOwner(names);
      if (owner && ownerAlive(owner)) throw new LabError(`lab ${names.prefix} already exists (owner pid ${owner.pid})`);
      await teardownPrefix(names);
    }
    const lab = new Lab(names, resolved, true);
    // Owner first: from here on a crash leaves something the sweeper can attribute.
    mkdirSync(names.stateDir, { recursive: true });
    writeFileSync(LAB_GUARD_FILE, 'this machine runs vnet-cni labs: the plugin refuses the root netns\n');
    writeFileSync(names.ownerFile, JSON.stringify(ownerRecord(options.ownerKind ?? 'process')) + '\n');
    writeSpecFile(names.specFile, resolved);
    if (options.handleSignals !== false) registerLiveLab(lab);
    try {
      await lab.build(log);
    } catch (err) {
      await lab.down().catch(() => {});
      throw err;
    }
    return lab;
  }

  /** A handle on a lab another process owns (the CLI keeper's): exec, status, changes; not down(). */
  static open(prefix: string): Lab {
    const names = new LabNames(prefix);
    if (!existsSync(names.specFile)) throw new LabError(`no lab with prefix ${prefix} (${names.specFile} is missing)`);
    return new Lab(names, readSpecFile(names.specFile), false);
  }

  private async build(log: (line: string) => void): Promise<void> {
    const { names } = this;
    const spec = this.current;
    const phase = async (name: string, work: () => Promise<void>): Promise<void> => {
      const start = performance.now();
      await work();
      this.timings[name] = Math.round(performance.now() - start);
      log(`${name}: ${this.timings[name]} ms`);
    };
    await phase('dirs', async () => {
      await ensureRootBpffs();
      for (const vm of spec.vms) prepareVmDirs(vmPaths(names, vm.name));
    });
    await phase('netns', async () => {
      const all = [names.fabric, names.inet, names.onprem, names.wire, ...spec.vms.map((vm) => names.vm(vm.name))];
      await ipBatch(undefined, all.map((ns) => `netns add ${ns}`).join('\n') + '\n');
    });
    await phase('links', async () => {
      await runChecked(['ip', 'netns', 'exec', names.fabric, 'sysctl', '-q', '-w', ...fabricSysctls()]);
      await ipBatch(names.fabric, fabricBatch(spec, names));
      const jobs: [string, string][] = [
        [names.inet, peerHostBatch(spec.internet.ip, PEER_LINKS.inet)],
        [names.onprem, peerHostBatch(spec.onprem.ip, PEER_LINKS.onprem)],
        [names.wire, peerHostBatch(WIRESERVER_IP, PEER_LINKS.wire)],
        ...spec.vms.map((vm): [string, string] => [names.vm(vm.name), vmBatch(spec, vm)]),
      ];
      await inParallel(jobs, CONCURRENCY, ([ns, batch]) => ipBatch(ns, batch));
    });
    await phase('nftables', () => this.nft(fabricRuleset(spec, names) + nsgScript(spec)));
    await phase('wireserver', () => this.startWireserver());
  }

  private async startWireserver(): Promise<void> {
    const { names } = this;
    const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'wireserver.js');
    const logFd = openSync(path.join(names.stateDir, 'wireserver.log'), 'a');
    try {
      const child = startChild(
        ['ip', 'netns', 'exec', names.wire, process.execPath, script, '--spec', names.specFile, '--admin', names.wireAdminSocket, '--fabric-netns', names.fabric, '--owner-pid', String(process.pid)],
        { stdout: 'pipe', stderr: logFd },
      );
      this.wireserver = child;
      child.unref();
      (child.stdout as { unref?: () => void } | null)?.unref?.();
      (child.stdin as { unref?: () => void } | null)?.unref?.();
      await waitForLine(child, /^READY /, 15_000, 'wireserver');
    } finally {
      closeSync(logFd);
    }
  }

  /** Remove everything this lab made. Idempotent; safe to call from t.teardown even if up() failed. */
  down(): Promise<void> {
    if (!this.owned) {
      const owner = readOwner(this.names);
      if (owner && ownerAlive(owner)) return Promise.reject(new LabError(`lab ${this.prefix} belongs to pid ${owner.pid}; stop that process (vnetctl lab down)`));
    }
    this.downPromise ??= (async () => {
      liveLabs.delete(this);
      if (this.wireserver) await stopChild(this.wireserver, 1000);
      await teardownPrefix(this.names);
      unregisterIfIdle();
    })();
    return this.downPromise;
  }

  /** Synchronous teardown for process 'exit' (no event loop left). */
  downSync(): void {
    if (this.downPromise) return;
    this.wireserver?.kill('SIGKILL');
    teardownPrefixSync(this.names);
  }

  // ---- names and facts --------------------------------------------------

  get prefix(): string {
    return this.names.prefix;
  }
  get stateDir(): string {
    return this.names.stateDir;
  }
  /** The live spec (as in vnet.json). Treat as read-only; change it through the methods below. */
  get spec(): ResolvedLabSpec {
    return this.current;
  }
  get vmNames(): string[] {
    return this.current.vms.map((vm) => vm.name);
  }
  get fabricNs(): string {
    return this.names.fabric;
  }
  get internetNs(): string {
    return this.names.inet;
  }
  get onpremNs(): string {
    return this.names.onprem;
  }
  get wireserverNs(): string {
    return this.names.wire;
  }
  get internetIp(): string {
    return this.current.internet.ip;
  }
  get onpremIp(): string {
    return this.current.onprem.ip;
  }
  get onpremPrefix(): string {
    return this.current.onprem.prefix;
  }
  get wireserverIp(): string {
    return WIRESERVER_IP;
  }
  get subnet(): string {
    return this.current.subnet;
  }
  get gateway(): string {
    return gatewayOf(this.current.subnet);
  }

  vmNetns(vm: string): string {
    return this.names.vm(this.vm(vm).name);
  }

  vmInfo(name: string): VmInfo {
    const vm = this.vm(name);
    return {
      name: vm.name,
      netns: this.names.vm(vm.name),
      netnsPath: netnsPath(this.names.vm(vm.name)),
      mac: vm.mac,
      primaryIp: vm.primaryIp,
      publicIp: vm.publicIp,
      secondaryIps: [...vm.secondaryIps],
      publicIps: { ...vm.publicIps },
      subnet: this.current.subnet,
      prefixLen: parseCidr(this.current.subnet).prefixLen,
      gateway: this.gateway,
    };
  }

  /** Host-side paths of a VM's directories (state, run, logs, conflists, bpffs). */
  vmPaths(vm: string): VmPaths {
    return vmPaths(this.names, this.vm(vm).name);
  }

  /** Pod netns paths currently present for a VM (or for all VMs). */
  podNetns(vm?: string): string[] {
    const vms = vm === undefined ? this.vmNames : [this.vm(vm).name];
    return labNetns(this.names)
      .filter((ns) => vms.some((name) => ns.startsWith(`${this.names.vm(name)}-`)))
      .map(netnsPath);
  }

  // ---- running things ----------------------------------------------------

  /** Run argv inside a VM (lab/vm-exec); never rejects on a non-zero exit. */
  execVm(vm: string, argv: string[], options: VmExecOptions = {}): Promise<ExecResult> {
    return execInVm(this.names, this.vm(vm).name, argv, options);
  }

  /** Run argv in any netns (a name, or a path such as a pod's /run/netns/...). */
  execNs(netns: string, argv: string[], options: NsExecOptions = {}): Promise<ExecResult> {
    return run(nsArgv(netns, argv), { input: options.input, timeoutMs: options.timeoutMs, env: { ...process.env, ...options.env } });
  }

  /** Create an empty netns for a pod of `vm`; returns its path (/run/netns/<prefix>-<vm>-<pod>). */
  async addPodNetns(vm: string, pod: string): Promise<string> {
    const name = this.names.pod(this.vm(vm).name, checkPodName(pod));
    await runChecked(['ip', 'netns', 'add', name]);
    return netnsPath(name);
  }

  /** addPodNetns for many pods of `vm` in one `ip -batch` process (one spawn instead of one per pod). */
  async addPodNetnsMany(vm: string, pods: string[]): Promise<string[]> {
    const names = pods.map((pod) => this.names.pod(this.vm(vm).name, checkPodName(pod)));
    if (names.length) await ipBatch(undefined, names.map((name) => `netns add ${name}\n`).join(''));
    return names.map(netnsPath);
  }

  /** Delete a pod netns made by addPodNetns (no error if it is already gone). */
  async removePodNetns(nsPath: string): Promise<void> {
    const name = path.basename(nsPath);
    if (!this.names.owns(name) || path.dirname(nsPath) !== path.dirname(netnsPath(name))) throw new LabError(`${nsPath} is not a netns of lab ${this.prefix}`);
    if (!existsSync(nsPath)) return;
    const result = await run(['ip', 'netns', 'del', name]);
    if (result.code !== 0 && existsSync(nsPath)) throw new LabError(`ip netns del ${name}: ${result.stderr.trim()}`);
  }

  // ---- changes while pods run ---------------------------------------------

  async addSecondaryIp(vm: string, ip: string): Promise<void> {
    await this.change((spec) => {
      const target = findVm(spec, vm);
      target.secondaryIps.push(ip);
      return async (next) => {
        const nextVm = findVm(next, vm);
        await this.nft(nicIpElement('add', this.names, nextVm.name, ip) + '\n');
        await ipBatch(this.names.fabric, secondaryRoute('add', nextVm, ip, this.names) + '\n');
      };
    });
  }

  async removeSecondaryIp(vm: string, ip: string): Promise<void> {
    await this.change((spec) => {
      const target = findVm(spec, vm);
      if (!target.secondaryIps.includes(ip)) throw new LabSpecError(`${ip} is not a secondary IP of ${vm}`);
      target.secondaryIps = target.secondaryIps.filter((other) => other !== ip);
      const pub = target.publicIps[ip];
      delete target.publicIps[ip];
      return async (next) => {
        const nextVm = findVm(next, vm);
        await this.nft([nicIpElement('delete', this.names, nextVm.name, ip), ...publicIpCommands(nextVm, ip, pub, undefined)].join('\n') + '\n');
        await ipBatch(this.names.fabric, secondaryRoute('del', nextVm, ip, this.names) + '\n');
      };
    });
  }

  /** Give an ipconfig (the primary IP or a secondary) a public IP, or take it away (null). */
  async setPublicIp(vm: string, privateIp: string, publicIp: string | null): Promise<void> {
    await this.change((spec) => {
      const target = findVm(spec, vm);
      const primary = privateIp === target.primaryIp;
      if (!primary && !target.secondaryIps.includes(privateIp)) throw new LabSpecError(`${privateIp} is not an IP of ${vm}'s NIC`);
      const before = primary ? target.publicIp : target.publicIps[privateIp];
      if (primary) {
        if (publicIp === null) delete target.publicIp;
        else target.publicIp = publicIp;
      } else if (publicIp === null) delete target.publicIps[privateIp];
      else target.publicIps[privateIp] = publicIp;
      return async (next) => {
        const cmds = publicIpCommands(findVm(next, vm), privateIp, before, publicIp ?? undefined);
        if (cmds.length) await this.nft(cmds.join('\n') + '\n');
      };
    });
  }

  /** Replace every NSG rule (subnet and NIC scopes) at once. */
  async setNsg(rules: NsgRule[]): Promise<void> {
    await this.change((spec) => {
      spec.nsg = rules;
      return (next) => this.nft(nsgScript(next));
    });
  }

  /** Add or replace (by name) a load balancer; resolves after the prober has probed it. */
  async setLoadBalancer(lb: LoadBalancerSpec): Promise<void> {
    await this.change((spec) => {
      spec.loadBalancers = [...spec.loadBalancers.filter((other) => other.name !== lb.name), { ...lb, probePort: lb.probePort ?? lb.backendPort }];
      return async () => {};
    });
    await this.syncLoadBalancers();
  }

  async removeLoadBalancer(name: string): Promise<void> {
    await this.change((spec) => {
      if (!spec.loadBalancers.some((lb) => lb.name === name)) throw new LabSpecError(`no load balancer named '${name}'`);
      spec.loadBalancers = spec.loadBalancers.filter((lb) => lb.name !== name);
      return async () => {};
    });
    await this.syncLoadBalancers();
  }

  /** Probe now (two rounds) and rewrite the fabric's LB rules. */
  async syncLoadBalancers(): Promise<LbHealth[]> {
    return (await adminRequest(this.names.wireAdminSocket, 'POST', '/lb/sync')).lb;
  }

  async lbStatus(): Promise<LbHealth[]> {
    return (await this.wireserverStatus()).lb;
  }

  /** Wait (bounded) until exactly `backends` of load balancer `name` are in rotation. */
  async waitForLbBackends(name: string, backends: string[], timeoutMs = 15_000): Promise<void> {
    const want = [...backends].sort().join(',');
    let seen = '';
    await pollUntil(
      async () => {
        const lb = (await this.lbStatus()).find((entry) => entry.name === name);
        seen = lb ? lb.backends.filter((b) => b.inRotation).map((b) => b.ip).sort().join(',') : '(no such LB)';
        return seen === want ? true : undefined;
      },
      timeoutMs,
      200,
      `load balancer ${name}: backends in rotation [${want}] (last seen [${seen}])`,
    );
  }

  /** Make the wireserver misbehave (or behave again: {mode: 'ok'}). */
  async setWireserverFault(fault: WireFault): Promise<void> {
    await adminRequest(this.names.wireAdminSocket, 'PUT', '/fault', fault);
  }

  /** The wireserver's fault mode, request counters (per VM) and LB health. */
  wireserverStatus(): Promise<WireserverStatus> {
    return adminRequest(this.names.wireAdminSocket, 'GET', '/status');
  }

  // ---- internals -----------------------------------------------------------

  private vm(name: string): ResolvedVm {
    const vm = this.current.vms.find((entry) => entry.name === name);
    if (!vm) throw new LabError(`lab ${this.prefix} has no VM named '${name}' (VMs: ${this.vmNames.join(', ')})`);
    return vm;
  }

  /**
   * One change, serialized with the others: `edit` mutates a copy of the spec
   * and returns how to apply it; the copy is validated, applied to the
   * kernel, and only then written to vnet.json.
   */
  private change(edit: (draft: ResolvedLabSpec) => (next: ResolvedLabSpec) => Promise<void>): Promise<void> {
    const task = this.queue.then(async () => {
      if (this.downPromise) throw new LabError(`lab ${this.prefix} is down`);
      const base = this.owned ? this.current : readSpecFile(this.names.specFile);
      const draft = structuredClone(base);
      const apply = edit(draft);
      const next = validateSpec(draft);
      await apply(next);
      writeSpecFile(this.names.specFile, next);
      this.current = next;
    });
    this.queue = task.catch(() => {});
    return task;
  }

  private async nft(script: string): Promise<void> {
    const result = await run(['ip', 'netns', 'exec', this.names.fabric, 'nft', '-f', '-'], { input: script, timeoutMs: 120_000 });
    if (result.code !== 0) throw new LabError(`nft in ${this.names.fabric}: ${result.stderr.trim().slice(0, 2000)}`);
  }
}

function findVm(spec: ResolvedLabSpec, name: string): ResolvedVm {
  const vm = spec.vms.find((entry) => entry.name === name);
  if (!vm) throw new LabSpecError(`no VM named '${name}'`);
  return vm;
}

/** argv that runs `argv` in a netns given by name or by path. */
export function nsArgv(netns: string, argv: readonly string[]): string[] {
  if (netns.includes('/')) return ['nsenter', `--net=${netns}`, '--', ...argv];
  return ['ip', 'netns', 'exec', netns, ...argv];
}

async function runChecked(argv: string[], input?: string): Promise<void> {
  const result = await run(argv, { input, timeoutMs: 120_000 });
  if (result.code !== 0) throw new LabError(`${argv.slice(0, 6).join(' ')}: ${(result.stderr || result.stdout).trim().slice(0, 2000)}`);
}

/** `ip [-n ns] -batch -`: many link/route/neigh commands in one process. */
function ipBatch(netns: string | undefined, batch: string): Promise<void> {
  return runChecked(netns === undefined ? ['ip', '-batch', '-'] : ['ip', '-n', netns, '-batch', '-'], batch);
}

async function inParallel<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++]!;
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

// ---- teardown on signals and exit --------------------------------------------

const liveLabs = new Set<Lab>();
let handlersInstalled = false;

function onExit(): void {
  for (const lab of liveLabs) lab.downSync();
}

function onSignal(signal: NodeJS.Signals): void {
  const code = signal === 'SIGINT' ? 130 : 143;
  void Promise.allSettled([...liveLabs].map((lab) => lab.down())).then(() => process.exit(code));
}

function registerLiveLab(lab: Lab): void {
  liveLabs.add(lab);
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', onExit);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

function unregisterIfIdle(): void {
  if (liveLabs.size > 0 || !handlersInstalled) return;
  handlersInstalled = false;
  process.off('exit', onExit);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}
