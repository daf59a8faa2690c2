// Drives azure-vnet inside a lab VM the way kubelet does: through libcni (the
// Go client in test/cniclient), with the plugin found on CNI_PATH and the
// conflist in the VM's /etc/cni/net.d.
import { writeFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Lab } from '../../../lab/lab.js';
import type { ExecResult } from '../../../control/exec.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** Repository root (this file runs from dist/test/lab/helpers). */
export const REPO = path.resolve(here, '..', '..', '..', '..');
export const CNICLIENT = path.join(REPO, 'test', 'cniclient', 'cniclient');
export const CNI_PATH = `${path.join(REPO, 'bin')}:/usr/lib/cni`;
/** The native shim (npm run build:shim) as azure-vnet/azure-vnet-ipam, as install-cni-plugin.sh installs it. */
export const SHIM_DIR = path.join(REPO, 'dist', 'shim');
export const SHIM_CNI_PATH = `${SHIM_DIR}:/usr/lib/cni`;
/** Where conflists live inside every VM (bind-mounted per VM by lab/vm-exec). */
export const VM_CONF_DIR = '/etc/cni/net.d';
/** libcni's result cache, kept per VM. */
export const VM_CACHE_DIR = '/var/lib/vnet-cni/libcni-cache';

export type Mode = 'iptables' | 'ebpf';
/** The dataplane modes every lab suite runs against. */
export const MODES: Mode[] = (process.env.VNET_TEST_MODES ?? 'iptables,ebpf').split(',').filter(Boolean) as Mode[];

/** The conflist's pod mode (`mode`). */
export type NetMode = 'bridge' | 'transparent';
/** The pod modes the dataplane suites run, each inside the same lab (VNET_TEST_NET_MODES narrows it). */
export const NET_MODES: NetMode[] = (process.env.VNET_TEST_NET_MODES ?? 'bridge,transparent').split(',').filter(Boolean) as NetMode[];

/** The seed conflist from the issue, unchanged except for the optional dataplane key, `mode` and extras. */
export function azureConflist(opts: { cniVersion?: string; dataplane?: Mode; mode?: NetMode; extra?: Record<string, unknown>; portmap?: boolean; ipam?: Record<string, unknown> } = {}): Record<string, unknown> {
  const plugin: Record<string, unknown> = { type: 'azure-vnet', mode: opts.mode ?? 'bridge', bridge: 'azure0', ipam: { type: 'azure-vnet-ipam', ...opts.ipam } };
  if (opts.dataplane && opts.dataplane !== 'iptables') plugin.dataplane = opts.dataplane;
  Object.assign(plugin, opts.extra);
  const plugins: unknown[] = [plugin];
  if (opts.portmap !== false) plugins.push({ type: 'portmap', capabilities: { portMappings: true }, snat: true });
  return { cniVersion: opts.cniVersion ?? '0.3.0', name: 'azure', plugins };
}

export interface PodHandle {
  name: string;
  containerId: string;
  netns: string;
  ifName: string;
  ip: string;
  result: Record<string, unknown>;
}

export class CniRunFailed extends Error {
  constructor(
    readonly verb: string,
    readonly res: ExecResult,
  ) {
    super(`cniclient ${verb} exited ${res.code}: ${res.stderr.trim() || res.stdout.trim()}`);
  }
  /** The CNI error the plugin printed, if any. */
  get cniError(): { code?: number; msg?: string; details?: string } | undefined {
    const line = this.res.stderr.trim().split('\n').pop();
    try {
      return line ? (JSON.parse(line) as { code?: number; msg?: string }) : undefined;
    } catch {
      return undefined;
    }
  }
}

export class VmCni {
  private readonly confFile: string;

  constructor(
    readonly lab: Lab,
    readonly vm: string,
    conflist: Record<string, unknown>,
    readonly fileName = '10-azure.conflist',
    /** Where libcni finds the plugins: the Node launchers (default) or SHIM_CNI_PATH. */
    readonly cniPath = CNI_PATH,
  ) {
    this.confFile = path.join(VM_CONF_DIR, fileName);
    this.setConflist(conflist);
  }

  setConflist(conflist: Record<string, unknown>): void {
    writeFileSync(path.join(this.lab.vmPaths(this.vm).cniConf, this.fileName), JSON.stringify(conflist, null, 2));
  }

  /** Runs cniclient inside the VM; resolves with its raw result (never throws). */
  async client(verb: string, flags: string[], env: Record<string, string> = {}): Promise<ExecResult> {
    return this.lab.execVm(this.vm, [CNICLIENT, verb, '--conflist', this.confFile, '--cni-path', this.cniPath, '--cache-dir', VM_CACHE_DIR, ...flags], {
      env: { CNI_PATH: this.cniPath, ...env },
      timeoutMs: 180_000,
    });
  }

  async clientOk(verb: string, flags: string[]): Promise<string> {
    const res = await this.client(verb, flags);
    if (res.code !== 0) throw new CniRunFailed(verb, res);
    return res.stdout;
  }

  /** Creates a pod netns and ADDs it. */
  async addPod(pod: string, opts: { ifName?: string; args?: string; capabilityArgs?: unknown; containerId?: string } = {}): Promise<PodHandle> {
    const netns = await this.lab.addPodNetns(this.vm, pod);
    const containerId = opts.containerId ?? `c-${this.vm}-${pod}`;
    return this.add(pod, netns, containerId, opts);
  }

  async add(pod: string, netns: string, containerId: string, opts: { ifName?: string; args?: string; capabilityArgs?: unknown } = {}): Promise<PodHandle> {
    const ifName = opts.ifName ?? 'eth0';
    const flags = ['--container', containerId, '--netns', netns, '--ifname', ifName, '--args', opts.args ?? `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod}`];
    if (opts.capabilityArgs) flags.push('--capability-args', JSON.stringify(opts.capabilityArgs));
    const out = await this.clientOk('add', flags);
    const result = JSON.parse(out) as { ips?: { address: string }[] };
    const ip = result.ips?.[0]?.address.split('/')[0];
    if (!ip) throw new Error(`ADD result has no IP: ${out}`);
    return { name: pod, containerId, netns, ifName, ip, result: result };
  }

  async del(p: Pick<PodHandle, 'containerId' | 'netns' | 'ifName'>, capabilityArgs?: unknown): Promise<void> {
    const flags = ['--container', p.containerId, '--netns', p.netns, '--ifname', p.ifName];
    if (capabilityArgs) flags.push('--capability-args', JSON.stringify(capabilityArgs));
    await this.clientOk('del', flags);
  }

  async check(p: Pick<PodHandle, 'containerId' | 'netns' | 'ifName'>): Promise<ExecResult> {
    return this.client('check', ['--container', p.containerId, '--netns', p.netns, '--ifname', p.ifName]);
  }

  /** The VM's node state file, as the plugin wrote it. */
  state(): { endpoints: Record<string, { ip: string; hostVeth: string; phase: string; podName?: string }>; ipam: unknown } {
    return JSON.parse(readFileSync(path.join(this.lab.vmPaths(this.vm).varLib, 'state.json'), 'utf8')) as ReturnType<VmCni['state']>;
  }

  log(): string {
    try {
      return readFileSync(path.join(this.lab.vmPaths(this.vm).log, 'azure-vnet.log'), 'utf8');
    } catch {
      return '';
    }
  }
}

export interface PluginRun {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, or undefined if it is not exactly one JSON document */
  json: Record<string, unknown> | undefined;
}

/** Execs bin/<plugin> (or <binDir>/<plugin>) inside the VM like a runtime: CNI_* env and the network config on stdin. */
export async function execPlugin(lab: Lab, vm: string, env: Record<string, string>, stdin: string, plugin = 'azure-vnet', binDir = path.join(REPO, 'bin')): Promise<PluginRun> {
  return execPluginArgv(lab, vm, [path.join(binDir, plugin)], env, stdin);
}

/** TEST ONLY entry points with crash and pause points (fault-hooks.ts): azure-vnet and `vnetctl daemon`. */
export const FAULTY_PLUGIN = path.join(REPO, 'dist', 'test', 'support', 'faulty-plugin.js');
export const FAULTY_DAEMON = path.join(REPO, 'dist', 'test', 'support', 'faulty-daemon.js');

/** Like execPlugin, through the test-only azure-vnet that honours VNET_CNI_TEST_CRASH_AT / _PAUSE_AT in `env`. */
export async function execFaultyPlugin(lab: Lab, vm: string, env: Record<string, string>, stdin: string): Promise<PluginRun> {
  return execPluginArgv(lab, vm, [process.execPath, FAULTY_PLUGIN], env, stdin);
}

async function execPluginArgv(lab: Lab, vm: string, argv: string[], env: Record<string, string>, stdin: string): Promise<PluginRun> {
  const res = await lab.execVm(vm, argv, { env: { CNI_PATH, ...env }, input: stdin, timeoutMs: 60_000 });
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(res.stdout) as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { ...res, json };
}

/** The plugin's view of one conflist entry, as libcni would pass it on stdin. */
export function pluginStdin(conflist: Record<string, unknown>, index = 0, extra: Record<string, unknown> = {}): string {
  const plugins = conflist.plugins as Record<string, unknown>[];
  return JSON.stringify({ cniVersion: conflist.cniVersion, name: conflist.name, ...plugins[index], ...extra });
}

/** What a failed call must leave untouched: the VM's links, its state file, its rules. */
export async function vmSnapshot(lab: Lab, vm: string): Promise<{ links: string; state: string; rules: string }> {
  const links = await lab.execVm(vm, ['ip', '-o', 'link', 'show']);
  const rules = await lab.execVm(vm, ['sh', '-c', 'iptables-save 2>/dev/null | grep -c "^-A" ; ebtables -t nat -L 2>/dev/null | grep -c "^-"']);
  let state = '';
  try {
    state = readFileSync(path.join(lab.vmPaths(vm).varLib, 'state.json'), 'utf8');
  } catch {
    state = '(none)';
  }
  return { links: linkNamesOf(links.stdout), state, rules: rules.stdout.trim() };
}

/** The sorted, comma-joined link names of an `ip -o link show` listing. */
export function linkNamesOf(ipOLinkShow: string): string {
  return ipOLinkShow
    .split('\n')
    .map((l) => l.split(':')[1]?.trim().split('@')[0])
    .filter(Boolean)
    .sort()
    .join(',');
}
