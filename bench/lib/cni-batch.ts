// One long-running `cniclient batch` per VM (test/cniclient/batch.go): every
// ADD is still a libcni AddNetworkList that execs the plugin chain inside the
// VM, but the Go client and lab/vm-exec (namespace + ~10 mounts) start once
// per VM instead of once per pod.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Lab } from '../../lab/lab.js';
import { vmExecArgv } from '../../lab/vm-exec.js';
import { existsSync } from 'node:fs';
import { CNICLIENT, CNI_PATH, REPO, VM_CACHE_DIR, VM_CONF_DIR } from '../../test/lab/helpers/cni-harness.js';

/** The native CNI shim (native/shim, built into dist/shim) when present: a forwarded call then starts no Node. */
export const SHIM_DIR = path.join(REPO, 'dist', 'shim');
export function shimBuilt(): boolean {
  return existsSync(path.join(SHIM_DIR, 'azure-vnet'));
}

interface Reply {
  id: number;
  ok: boolean;
  result?: { ips?: { address: string }[] };
  error?: { code: number; msg: string };
}

/** utime+stime of a process and of its waited-for children, in CPU seconds. */
export function procCpu(pid: number): { self: number; children: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
    // after "pid (comm) ": state=0 ... utime=11 stime=12 cutime=13 cstime=14
    return { self: (f[11]! + f[12]!) / 100, children: (f[13]! + f[14]!) / 100 };
  } catch {
    return { self: NaN, children: NaN };
  }
}

export class VmCniBatch {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void }>();
  private readonly child: ChildProcess;
  private exited = false;

  constructor(lab: Lab, readonly vm: string, options: { confFile?: string; cniPath?: string } = {}) {
    const cniPath = options.cniPath ?? CNI_PATH;
    const argv = vmExecArgv(lab.names, vm, [CNICLIENT, 'batch', '--conflist', path.join(VM_CONF_DIR, options.confFile ?? '10-azure.conflist'), '--cni-path', cniPath, '--cache-dir', VM_CACHE_DIR]);
    this.child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, CNI_PATH: cniPath } });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const reply = JSON.parse(line) as Reply;
      this.pending.get(reply.id)?.resolve(reply);
      this.pending.delete(reply.id);
    });
    this.child.on('exit', () => {
      this.exited = true;
      for (const [id, p] of this.pending) p.resolve({ id, ok: false, error: { code: -1, msg: 'cniclient batch exited' } });
      this.pending.clear();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** ADD through libcni; resolves with the pod's IP, rejects with the CNI error. */
  async add(container: string, netns: string, args: string): Promise<string> {
    if (this.exited) throw new Error('cniclient batch exited');
    const id = this.nextId++;
    const reply = await new Promise<Reply>((resolve) => {
      this.pending.set(id, { resolve });
      this.child.stdin!.write(JSON.stringify({ id, verb: 'add', container, netns, ifname: 'eth0', args }) + '\n');
    });
    if (!reply.ok) throw new Error(`ADD ${container}: ${JSON.stringify(reply.error)}`);
    const ip = reply.result?.ips?.[0]?.address.split('/')[0];
    if (!ip) throw new Error(`ADD ${container}: result has no IP`);
    return ip;
  }

  /** Close stdin (the client exits after its last job); resolves when it has. */
  close(): Promise<void> {
    if (this.exited) return Promise.resolve();
    return new Promise((resolve) => {
      this.child.once('exit', () => resolve());
      this.child.stdin!.end();
    });
  }

  kill(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }
}
