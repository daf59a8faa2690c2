// "Inside a VM": the TypeScript side of lab/vm-exec. A VM's commands see the
// VM's netns, a sysfs of it, the VM's own bpffs dir at /sys/fs/bpf and the
// VM's own plugin directories, like a real VM's disk.
import { mkdirSync, statfsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, type ExecResult } from '../control/exec.js';
import { BPFFS_ROOT, type LabNames } from './naming.js';
import { LabError } from './errors.js';

const BPF_FS_MAGIC = 0xcafe4a11;

/** Host-side paths of one VM's directories, and where the VM sees them. */
export interface VmPaths {
  /** the VM's directory in the lab state dir */
  root: string;
  /** seen as /var/lib/vnet-cni inside the VM */
  varLib: string;
  /** seen as /run/vnet-cni */
  run: string;
  /** seen as /var/log */
  log: string;
  /** seen as /etc/cni/net.d */
  cniConf: string;
  /** the VM's bpffs dir on the machine's bpffs, seen as /sys/fs/bpf */
  bpffs: string;
}

export interface VmExecOptions {
  input?: string;
  env?: Record<string, string>;
  timeoutMs?: number;
}

/** lab/vm-exec in the repository (the compiled module sits in dist/lab/). */
export function vmExecScript(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const repoRoot = here.includes(`${path.sep}dist${path.sep}`) ? path.resolve(here, '..', '..') : path.resolve(here, '..');
  return path.join(repoRoot, 'lab', 'vm-exec');
}

export function vmPaths(names: LabNames, vm: string): VmPaths {
  const root = names.vmDir(vm);
  return {
    root,
    varLib: path.join(root, 'lib'),
    run: path.join(root, 'run'),
    log: path.join(root, 'log'),
    cniConf: path.join(root, 'cni'),
    bpffs: names.bpfDir(vm),
  };
}

export function isBpffs(dir: string): boolean {
  try {
    return statfsSync(dir).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
}

/** Mount the machine's bpffs at /sys/fs/bpf if nothing is there yet. */
export async function ensureRootBpffs(): Promise<void> {
  if (isBpffs(BPFFS_ROOT)) return;
  const result = await run(['mount', '-t', 'bpf', 'bpf', BPFFS_ROOT]);
  if (result.code !== 0 && !isBpffs(BPFFS_ROOT)) throw new LabError(`cannot mount bpffs at ${BPFFS_ROOT}: ${result.stderr.trim()}`);
}

/** Create a VM's directories (state dir side and bpffs side). */
export function prepareVmDirs(paths: VmPaths): void {
  for (const dir of [paths.varLib, paths.run, paths.log, paths.cniConf, path.join(paths.root, '.mnt', 'bpf'), path.join(paths.root, '.mnt', 'cgroup')]) {
    mkdirSync(dir, { recursive: true });
  }
  mkdirSync(paths.bpffs, { recursive: true });
}

export function vmExecArgv(names: LabNames, vm: string, argv: readonly string[]): string[] {
  const paths = vmPaths(names, vm);
  return [vmExecScript(), names.vm(vm), paths.root, paths.bpffs, ...argv];
}

/** Run argv inside the VM; resolves with its exit code and output, never rejects on a non-zero exit. */
export function execInVm(names: LabNames, vm: string, argv: readonly string[], options: VmExecOptions = {}): Promise<ExecResult> {
  if (argv.length === 0) throw new LabError('execVm: empty argv');
  return run(vmExecArgv(names, vm, argv), {
    input: options.input,
    timeoutMs: options.timeoutMs,
    env: { ...process.env, ...options.env },
  });
}
