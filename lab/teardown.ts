// Removing everything a lab prefix owns: processes inside its namespaces,
// the namespaces, its bpffs dirs and its state dir. Used by Lab.down(), by
// the exit handler (synchronously: no event loop is left) and by the sweeper.
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { run } from '../control/exec.js';
import { BPFFS_ROOT, LabNames, NETNS_DIR } from './naming.js';

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** PROC_NET_INIT_INO: the initial netns's fixed inode number (0xEFFFFFF9). */
const INIT_NETNS_INO = 4026531833;

/**
 * Never kill "the processes of" a netns file that is really the machine's
 * netns (or ours): that would be every process on the machine. A bind of the
 * root netns under /run/netns is easy to make by mistake (ip netns attach).
 */
function isForeignToLab(ns: string): boolean {
  try {
    const ino = statSync(path.join(NETNS_DIR, ns)).ino;
    return ino === INIT_NETNS_INO || ino === statSync('/proc/self/ns/net').ino;
  } catch {
    return true;
  }
}

/** Netns names of this lab (VMs, pods, fabric, hosts). */
export function labNetns(names: LabNames): string[] {
  return listDir(NETNS_DIR).filter((name) => names.owns(name));
}

export function labBpfDirs(names: LabNames): string[] {
  return listDir(BPFFS_ROOT)
    .filter((name) => names.owns(name))
    .map((name) => path.join(BPFFS_ROOT, name));
}

/**
 * Pids of processes whose netns is one of `namespaces` (names under
 * NETNS_DIR), in one pass over /proc: the same test as `ip netns pids`
 * (the nsfs inode), without one process per namespace, which cost minutes
 * for a lab with 16,000 pod namespaces.
 */
function pidsInNetns(namespaces: string[]): number[] {
  const inos = new Set<number>();
  for (const ns of namespaces) {
    if (isForeignToLab(ns)) continue;
    try {
      inos.add(statSync(path.join(NETNS_DIR, ns)).ino);
    } catch {
      // gone already
    }
  }
  if (inos.size === 0) return [];
  const pids: number[] = [];
  for (const entry of listDir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid || pid <= 1) continue;
    try {
      if (inos.has(statSync(`/proc/${entry}/ns/net`).ino)) pids.push(pid);
    } catch {
      // exited, or a kernel thread we may not inspect
    }
  }
  return pids;
}

function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

function removeFiles(names: LabNames): void {
  for (const dir of labBpfDirs(names)) rmSync(dir, { recursive: true, force: true });
  if (existsSync(names.stateDir)) rmSync(names.stateDir, { recursive: true, force: true });
}

export async function teardownPrefix(names: LabNames): Promise<void> {
  const namespaces = labNetns(names);
  // Processes first: a process inside a VM (a daemon, a whoami server, vm-exec)
  // keeps its netns and mounts alive.
  killAll(pidsInNetns(namespaces));
  if (namespaces.length > 0) {
    await run(['ip', '-force', '-batch', '-'], { input: namespaces.map((ns) => `netns del ${ns}\n`).join(''), timeoutMs: 600_000 });
  }
  removeFiles(names);
}

/** The same, for process 'exit' handlers, where only synchronous work runs. */
export function teardownPrefixSync(names: LabNames): void {
  const namespaces = labNetns(names);
  killAll(pidsInNetns(namespaces));
  if (namespaces.length > 0) {
    spawnSync('ip', ['-force', '-batch', '-'], { input: namespaces.map((ns) => `netns del ${ns}\n`).join(''), timeout: 600_000 });
  }
  removeFiles(names);
}

/** What of a prefix is still on the machine (for tests and `lab status`). */
export function leftovers(names: LabNames): { netns: string[]; bpffs: string[]; stateDir: boolean } {
  return { netns: labNetns(names), bpffs: labBpfDirs(names), stateDir: existsSync(names.stateDir) };
}
