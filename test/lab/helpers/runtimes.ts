// Real container engines inside a lab VM: dockerd (Debian's docker.io 20.10)
// and containerd (1.6, with its CRI plugin). Each runs through lab/vm-exec (the
// VM's netns, its own mount namespace with the VM's /var/lib/vnet-cni,
// /run/vnet-cni, /var/log and /etc/cni/net.d, and the machine's cgroup mounts
// that runc needs), with its root, state, pidfile and socket under the lab's
// state dir and its containers under a cgroup parent of the lab's own, removed
// on stop. No registry is reachable: images are imported from a
// busybox-static rootfs.
import { mkdirSync, copyFileSync, chmodSync, symlinkSync, existsSync } from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Lab } from '../../../lab/lab.js';
import { startChild, stopChild, pollUntil } from '../../../lab/children.js';
import { vmExecArgv } from '../../../lab/vm-exec.js';
import { removeCgroupTree } from '../../../lab/containerd.js';
import { run, runOk, type ExecResult } from '../../../control/exec.js';

/** The Debian docker CLI (a newer one may sit earlier on PATH). */
export const DOCKER_CLI = '/usr/bin/docker';
export const IMAGE = 'vnetlab/busybox:latest';
const APPLETS = ['sh', 'nc', 'sleep', 'ip', 'cat', 'echo', 'hostname', 'ls', 'true'];

export function haveBinaries(...names: string[]): string | false {
  const missing = names.filter((n) => !['/usr/bin', '/usr/sbin', '/bin', '/sbin'].some((d) => existsSync(path.join(d, n))));
  return missing.length ? `not installed: ${missing.join(', ')} (scripts/install-deps.sh)` : false;
}

/** A tarball of a busybox-static rootfs (docker import / ctr images import). */
export async function busyboxRootfsTar(dir: string): Promise<string> {
  const rootfs = path.join(dir, 'rootfs');
  for (const d of ['bin', 'tmp', 'etc', 'proc', 'sys', 'dev']) mkdirSync(path.join(rootfs, d), { recursive: true });
  copyFileSync('/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
  chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
  for (const applet of APPLETS) symlinkSync('busybox', path.join(rootfs, 'bin', applet));
  const tar = path.join(dir, 'rootfs.tar');
  await runOk(['tar', '-C', rootfs, '-cf', tar, '.']);
  return tar;
}

/** The cgroup parent of one engine's containers: `vnetlab-<prefix>-<vm>` under every hierarchy. */
export function cgroupParent(lab: Lab, vm: string): string {
  return `vnetlab-${lab.prefix}-${vm}`;
}

async function waitFor(what: string, check: () => Promise<boolean>, child: ChildProcess, log: () => string): Promise<void> {
  await pollUntil(async () => {
    if (child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode}): ${log().slice(-2000)}`);
    return (await check()) ? true : undefined;
  }, 60_000, 100, `${what} ready`);
}

/** dockerd in a lab VM, talked to through its own socket with the docker CLI. */
export class Dockerd {
  private constructor(
    readonly lab: Lab,
    readonly vm: string,
    readonly dir: string,
    private readonly child: ChildProcess,
    private readonly logText: () => string,
  ) {}

  get socket(): string {
    return path.join(this.dir, 'docker.sock');
  }

  /** What the docker CLI needs to reach this engine. */
  get env(): Record<string, string> {
    return { DOCKER_HOST: `unix://${this.socket}` };
  }

  static async start(lab: Lab, vm: string): Promise<Dockerd> {
    const dir = path.join(lab.names.stateDir, `dk-${vm}`);
    mkdirSync(dir, { recursive: true });
    const argv = [
      'dockerd', '--data-root', path.join(dir, 'data'), '--exec-root', path.join(dir, 'exec'), '--pidfile', path.join(dir, 'docker.pid'),
      '-H', `unix://${path.join(dir, 'docker.sock')}`,
      // The VNet is the plugin's: no docker0, no rules, no sysctls.
      '--bridge=none', '--iptables=false', '--ip6tables=false', '--ip-forward=false', '--ip-masq=false',
      '--storage-driver', 'vfs', '--exec-opt', 'native.cgroupdriver=cgroupfs', '--cgroup-parent', `/${cgroupParent(lab, vm)}`,
    ];
    const child = startChild(vmExecArgv(lab.names, vm, argv));
    let log = '';
    child.stdout?.on('data', (b: Buffer) => { log = (log + b.toString()).slice(-20_000); });
    child.stderr?.on('data', (b: Buffer) => { log = (log + b.toString()).slice(-20_000); });
    const d = new Dockerd(lab, vm, dir, child, () => log);
    await waitFor('dockerd', async () => (await d.docker(['version', '--format', '{{.Server.Version}}'])).code === 0, child, () => log);
    return d;
  }

  docker(args: string[], timeoutMs = 120_000): Promise<ExecResult> {
    return run(['env', ...Object.entries(this.env).map(([k, v]) => `${k}=${v}`), DOCKER_CLI, ...args], { timeoutMs });
  }

  async dockerOk(args: string[]): Promise<string> {
    const res = await this.docker(args);
    if (res.code !== 0) throw new Error(`docker ${args.join(' ')}: exit ${res.code}: ${res.stderr.trim()}`);
    return res.stdout.trim();
  }

  log(): string {
    return this.logText();
  }

  /** Remove every container, stop the engine (and the containerd it started), remove the cgroup parent. */
  async stop(): Promise<void> {
    const ids = (await this.docker(['ps', '-aq'])).stdout.split('\n').filter(Boolean);
    if (ids.length) await this.docker(['rm', '-f', ...ids]);
    await stopChild(this.child, 20_000);
    await removeCgroupTree(cgroupParent(this.lab, this.vm));
  }
}

