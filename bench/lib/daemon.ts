// The node daemon inside a lab VM, started the way a node would run it
// (`vnetctl daemon`) through lab/vm-exec, so it sees the VM's /var/lib,
// /run/vnet-cni and /sys. Every exec in the chain replaces the process, so
// the child's pid is the daemon's own (its RSS is what we read).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Lab } from '../../lab/lab.js';
import { vmExecArgv } from '../../lab/vm-exec.js';
import { pollUntil, startChild, stopChild } from '../../lab/children.js';
import { REPO } from './load.js';

/** Where the daemon listens, as seen inside the VM. */
export const DAEMON_SOCKET = '/run/vnet-cni/daemon.sock';

export class VmDaemon {
  private constructor(
    readonly vm: string,
    private readonly child: ChildProcess,
  ) {}

  /** `extra`: more `vnetctl daemon` flags (e.g. --policy-dir DIR). */
  static async start(lab: Lab, vm: string, timeoutMs = 30_000, extra: string[] = []): Promise<VmDaemon> {
    const argv = vmExecArgv(lab.names, vm, [path.join(REPO, 'bin', 'vnetctl'), 'daemon', '--socket', DAEMON_SOCKET, '--state-dir', '/var/lib/vnet-cni', '--log-file', '/var/log/vnet-cni-daemon.log', ...extra]);
    const child = startChild(argv, { stdout: 'ignore', stderr: 2 });
    const daemon = new VmDaemon(vm, child);
    const hostSocket = path.join(lab.vmPaths(vm).run, path.basename(DAEMON_SOCKET));
    try {
      await pollUntil(() => (child.exitCode !== null ? Promise.reject(new Error(`daemon in ${vm} exited ${child.exitCode}`)) : existsSync(hostSocket) || undefined), timeoutMs, 50, `daemon socket in ${vm}`);
    } catch (err) {
      await daemon.stop();
      throw err;
    }
    return daemon;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Resident set size in MiB (VmRSS), or NaN if the process is gone. */
  rssMiB(): number {
    try {
      const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
      return m ? Number(m[1]) / 1024 : NaN;
    } catch {
      return NaN;
    }
  }

  stop(): Promise<void> {
    return stopChild(this.child, 3000);
  }
}
