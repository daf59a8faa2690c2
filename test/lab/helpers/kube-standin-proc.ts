// The stand-in API server (lab/kube-standin.ts) as a process inside a lab VM's
// netns, so the VM's daemon reaches it on the VM's own loopback; the test
// drives it over the child's stdin/stdout (one JSON command per line).
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { ChildProcess } from 'node:child_process';
import type { Lab } from '../../../lab/lab.js';
import { startChild, stopChild, waitForLine } from '../../../lab/children.js';
import { vmExecArgv } from '../../../lab/vm-exec.js';
import type { LoggedRequest, StandinCommand, KubeObj } from '../../../lab/kube-standin.js';
import { REPO } from './cni-harness.js';

/** Where the VM sees the kubeconfig this helper writes (the VM's /run/vnet-cni). */
export const VM_KUBECONFIG = '/run/vnet-cni/kubeconfig.json';

export class StandinProc {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();

  private constructor(
    readonly child: ChildProcess,
    readonly port: number,
  ) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let msg: { id?: number; ok?: boolean; result?: unknown; error?: string };
      try {
        msg = JSON.parse(line) as typeof msg;
      } catch {
        return;
      }
      const w = msg.id === undefined ? undefined : this.waiting.get(msg.id);
      if (!w) return;
      this.waiting.delete(msg.id!);
      if (msg.ok) w.resolve(msg.result);
      else w.reject(new Error(`stand-in: ${msg.error}`));
    });
  }

  /** Start the stand-in in `vm` and write a kubeconfig for it (plain HTTP, so insecure-skip-tls-verify). */
  static async start(lab: Lab, vm: string, bookmarkMs = 500): Promise<StandinProc> {
    const child = startChild(vmExecArgv(lab.names, vm, [process.execPath, path.join(REPO, 'dist', 'lab', 'kube-standin.js'), '--port', '0', '--bookmark-ms', String(bookmarkMs)]));
    const m = await waitForLine(child, /^LISTENING (\d+)/, 20_000, 'kube-standin');
    const proc = new StandinProc(child, Number(m[1]));
    const kubeconfig = {
      apiVersion: 'v1', kind: 'Config', 'current-context': 'standin',
      clusters: [{ name: 'standin', cluster: { server: `http://127.0.0.1:${proc.port}`, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'vnet-cni', user: { token: 'stand-in-accepts-anything' } }],
      contexts: [{ name: 'standin', context: { cluster: 'standin', user: 'vnet-cni' } }],
    };
    writeFileSync(path.join(lab.vmPaths(vm).run, 'kubeconfig.json'), JSON.stringify(kubeconfig));
    return proc;
  }

  cmd<T = unknown>(c: StandinCommand): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve, reject });
      this.child.stdin!.write(`${JSON.stringify({ ...c, id })}\n`);
    });
  }

  put(object: KubeObj): Promise<KubeObj> {
    return this.cmd({ op: 'put', object });
  }

  get(collection: 'nodenetworkconfigs' | 'pods' | 'nodes', namespace: string | undefined, name: string): Promise<KubeObj | null> {
    return this.cmd({ op: 'get', collection, ...(namespace ? { namespace } : {}), name });
  }

  requests(since = 0): Promise<LoggedRequest[]> {
    return this.cmd({ op: 'requests', since });
  }

  stop(): Promise<void> {
    return stopChild(this.child);
  }
}
