// containerd (Debian's 1.6, with its CRI plugin) inside a lab VM, the way a
// node runs it under kubelet, for the lab tests and `npm run bench`.
//
// It runs through lab/vm-exec (the VM's netns and a mount namespace of its
// own with the VM's /etc/cni/net.d, /run/vnet-cni, /var/lib/vnet-cni and the
// machine's cgroup mounts that runc needs), with root, state, socket and the
// CNI bin dir under `dir`. The settings a node needs are those in config():
// the CRI plugin's CNI bin dir must hold `loopback` (CRI runs it for every
// sandbox) beside azure-vnet, azure-vnet-ipam and portmap; here
// `restrict_oom_score_adj` lets the sandbox's OOM score setting pass without
// the privilege to lower it, netns files live under the state dir (so nothing
// is left in the machine's /run/netns) and the snapshotter is `native`.
// No registry is reachable: the sandbox (pause) image is an OCI archive of a
// busybox-static rootfs, imported with `ctr images import`.
import { mkdirSync, writeFileSync, readFileSync, readdirSync, rmdirSync, symlinkSync, rmSync, copyFileSync, chmodSync, existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Lab } from './lab.js';
import { startChild, stopChild, pollUntil, waitForLine } from './children.js';
import { vmExecArgv } from './vm-exec.js';
import { runOk } from '../control/exec.js';
import { CriClient } from './cri.js';

export const PAUSE_IMAGE = 'docker.io/vnetlab/pause:latest';

/** What the CRI plugin's CNI bin dir links to: plugin name -> executable. */
export type CniBins = Record<string, string>;

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

/**
 * An OCI image archive (oci-layout, index.json, blobs) of a busybox-static
 * rootfs whose command sleeps forever: a pause image without a registry.
 */
export async function buildPauseImage(dir: string, name = PAUSE_IMAGE): Promise<string> {
  const rootfs = path.join(dir, 'pause-rootfs');
  rmSync(rootfs, { recursive: true, force: true });
  for (const d of ['bin', 'dev', 'proc', 'sys', 'etc', 'tmp']) mkdirSync(path.join(rootfs, d), { recursive: true });
  copyFileSync('/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
  chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
  for (const a of ['sh', 'sleep', 'nc', 'ip', 'cat']) symlinkSync('busybox', path.join(rootfs, 'bin', a));
  const layout = path.join(dir, 'pause-oci');
  rmSync(layout, { recursive: true, force: true });
  const blobs = path.join(layout, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const layerTar = path.join(dir, 'pause-layer.tar');
  await runOk(['tar', '--numeric-owner', '--owner=0', '--group=0', '-C', rootfs, '-cf', layerTar, '.']);
  const layer = readFileSync(layerTar);
  const blob = (data: Buffer | string): { digest: string; size: number } => {
    const digest = sha256(data);
    writeFileSync(path.join(blobs, digest), data);
    return { digest: `sha256:${digest}`, size: Buffer.byteLength(data) };
  };
  const layerDesc = blob(layer);
  // PID 1 ignores SIGTERM; CRI stops a sandbox with SIGKILL anyway.
  const config = blob(JSON.stringify({
    architecture: 'amd64', os: 'linux',
    config: { Entrypoint: ['/bin/sleep'], Cmd: ['2147483647'], WorkingDir: '/' },
    rootfs: { type: 'layers', diff_ids: [layerDesc.digest] },
  }));
  const manifest = blob(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layerDesc }],
  }));
  writeFileSync(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(path.join(layout, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{
      mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, platform: { architecture: 'amd64', os: 'linux' },
      annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': name.split(':').pop() },
    }],
  }));
  const archive = path.join(dir, 'pause-oci.tar');
  await runOk(['tar', '-C', layout, '-cf', archive, '.']);
  return archive;
}

export interface ContainerdOptions {
  /** CNI plugins for the CRI plugin's bin dir (loopback and portmap from /usr/lib/cni are always added). */
  cniBins: CniBins;
  /** Where root, state, socket and bin dir go; default <lab state dir>/ctd-<vm>. */
  dir?: string;
  /** The pause image archive (buildPauseImage); built once per dir if absent. */
  pauseArchive?: string;
  /** The CNI conf dir containerd reads, as the VM sees it; default /etc/cni/net.d (the VM's). */
  confDir?: string;
}

/**
 * Kill every process left under a lab engine's cgroup parent (`name`, in every
 * hierarchy) and remove its directories, deepest first. Bounded: a few passes.
 */
export async function removeCgroupTree(name: string): Promise<void> {
  const root = '/sys/fs/cgroup';
  const tops = existsSync(path.join(root, 'cgroup.controllers')) ? [path.join(root, name)] : readdirSync(root).map((h) => path.join(root, h, name));
  const dirs = (dir: string): string[] => {
    if (!existsSync(dir)) return [];
    const subs = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).flatMap((e) => dirs(path.join(dir, e.name)));
    return [...subs, dir]; // deepest first
  };
  for (let pass = 0; pass < 20; pass++) {
    const all = tops.flatMap(dirs);
    if (all.length === 0) return;
    for (const dir of all) {
      let procs: string[] = [];
      try {
        procs = readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
      } catch {
        // gone meanwhile
      }
      for (const pid of procs) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // already exited
        }
      }
      try {
        rmdirSync(dir);
      } catch {
        // busy until its killed processes are reaped: next pass
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** containerd with the CRI plugin in one lab VM. */
export class Containerd {
  readonly cri: CriClient;
  private child: ChildProcess | undefined;
  /** The VM's "init": holds the mount namespace containerd (across restarts) and the daemon share. */
  private holder: ChildProcess | undefined;
  private logBuf = '';

  private constructor(
    readonly lab: Lab,
    readonly vm: string,
    readonly dir: string,
    private readonly opts: ContainerdOptions,
  ) {
    this.cri = new CriClient(this.socket);
  }

  get socket(): string {
    return path.join(this.dir, 'c.sock');
  }

  get binDir(): string {
    return path.join(this.dir, 'cni-bin');
  }

  /** The cgroup parent to give sandboxes (linux.cgroup_parent), so their cgroups are the lab's to remove. */
  get cgroupParent(): string {
    return `/vnetlab-${this.lab.prefix}-${this.vm}`;
  }

  /** containerd's pid (the daemon can join its mount namespace to see the sandboxes' netns files). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  static async start(lab: Lab, vm: string, opts: ContainerdOptions): Promise<Containerd> {
    const c = new Containerd(lab, vm, opts.dir ?? path.join(lab.names.stateDir, `ctd-${vm}`), opts);
    mkdirSync(c.dir, { recursive: true });
    c.linkBins();
    writeFileSync(path.join(c.dir, 'config.toml'), c.config());
    // The sandboxes' netns files are bind mounts in containerd's mount namespace: a restarted
    // containerd and the node daemon must see the same ones, so all of them join one namespace.
    c.holder = startChild(vmExecArgv(lab.names, vm, ['sh', '-c', 'echo up; exec sleep 2147483647']));
    await waitForLine(c.holder, /^up$/, 30_000, `mount namespace holder in ${vm}`);
    await c.launch();
    const archive = opts.pauseArchive ?? (existsSync(path.join(c.dir, 'pause-oci.tar')) ? path.join(c.dir, 'pause-oci.tar') : await buildPauseImage(c.dir));
    await runOk(['ctr', '--address', c.socket, '-n', 'k8s.io', 'images', 'import', '--snapshotter', 'native', archive], { timeoutMs: 120_000 });
    return c;
  }

  private linkBins(): void {
    rmSync(this.binDir, { recursive: true, force: true });
    mkdirSync(this.binDir, { recursive: true });
    const bins: CniBins = { loopback: '/usr/lib/cni/loopback', portmap: '/usr/lib/cni/portmap', ...this.opts.cniBins };
    for (const [name, target] of Object.entries(bins)) symlinkSync(target, path.join(this.binDir, name));
  }

  /** The config.toml: every path under dir, the CRI plugin's CNI settings, nothing shared with the machine. */
  config(): string {
    const d = this.dir;
    const cri = 'plugins."io.containerd.grpc.v1.cri"';
    return [
      'version = 2',
      `root = "${d}/root"`,
      `state = "${d}/state"`,
      'disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.internal.v1.opt"]',
      '[grpc]', `  address = "${this.socket}"`,
      '[ttrpc]', `  address = "${this.socket}.ttrpc"`,
      `[${cri}]`,
      `  sandbox_image = "${PAUSE_IMAGE}"`,
      '  restrict_oom_score_adj = true',
      '  netns_mounts_under_state_dir = true',
      '  disable_apparmor = true',
      '  stream_server_address = "127.0.0.1"',
      '  stream_server_port = "0"',
      `[${cri}.containerd]`,
      '  snapshotter = "native"',
      '  default_runtime_name = "runc"',
      `[${cri}.containerd.runtimes.runc]`,
      '  runtime_type = "io.containerd.runc.v2"',
      `[${cri}.containerd.runtimes.runc.options]`,
      '  SystemdCgroup = false',
      `[${cri}.cni]`,
      `  bin_dir = "${this.binDir}"`,
      `  conf_dir = "${this.opts.confDir ?? '/etc/cni/net.d'}"`,
      '  max_conf_num = 1',
      '',
    ].join('\n');
  }

  /** argv to run a program in the VM's netns and containerd's mount namespace (the node daemon). */
  inVm(argv: string[]): string[] {
    if (!this.holder?.pid) throw new Error('containerd not started');
    return ['nsenter', '-t', String(this.holder.pid), '-m', '-n', '--', 'env', 'VNET_CNI_LAB=1', ...argv];
  }

  private async launch(): Promise<void> {
    const child = startChild(this.inVm(['containerd', '--config', path.join(this.dir, 'config.toml'), '--log-level', 'warn']));
    this.child = child;
    const keep = (b: Buffer): void => {
      this.logBuf = (this.logBuf + b.toString()).slice(-50_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    await pollUntil(async () => {
      if (child.exitCode !== null) throw new Error(`containerd exited (${child.exitCode}): ${this.logBuf.slice(-2000)}`);
      try {
        await this.cri.version();
        return true;
      } catch {
        return undefined;
      }
    }, 60_000, 100, `containerd in ${this.vm} ready`);
  }

  log(): string {
    return this.logBuf;
  }

  /** Wait until the CRI plugin has (re)loaded the conflist named `network` from its conf dir (it watches the dir). */
  async waitForNetwork(network: string): Promise<void> {
    await pollUntil(async () => {
      const st = await this.cri.status(true).catch(() => undefined);
      const ready = st?.status.conditions.find((c) => c.type === 'NetworkReady')?.status;
      return ready && (st?.info.cniconfig ?? '').includes(`"Name":"${network}"`) ? true : undefined;
    }, 60_000, 100, `containerd in ${this.vm} loaded CNI network ${network}`);
  }

  /** Stop containerd (SIGTERM; the shims and sandboxes keep running, as on a node) and start it again. */
  async restart(): Promise<void> {
    if (this.child) await stopChild(this.child, 20_000);
    this.cri.close();
    await this.launch();
  }

  /** Stop and remove every sandbox, stop containerd, then its shims' leftovers, and remove the cgroup parent. */
  async stop(): Promise<void> {
    if (this.child && this.child.exitCode === null) {
      const items = await this.cri.listPodSandbox().catch(() => []);
      for (const s of items) {
        await this.cri.stopPodSandbox(s.id).catch(() => {});
        await this.cri.removePodSandbox(s.id).catch(() => {});
      }
      this.cri.close();
      await stopChild(this.child, 20_000);
    }
    if (this.holder) await stopChild(this.holder, 1000);
    // Shims outlive containerd by design; their processes sit in the VM's netns, which lab.down() empties.
    // Sandboxes a failed Stop left behind sit in their own netns: found by the lab's cgroup parent instead.
    await removeCgroupTree(this.cgroupParent.slice(1));
  }
}
