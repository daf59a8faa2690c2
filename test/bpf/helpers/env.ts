// Throwaway namespaces, bpffs pin roots and background processes for the BPF
// tests. Every name carries `vbt<pid>` so a crashed run's leftovers can be
// recognised (and are removed by the next run), and nothing touches the root
// network namespace: links are created inside our own namespaces only.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, runOk } from '../../../control/exec.js';

const BPFFS_MAGIC = 0xcafe4a11;
export const PREFIX = `vbt${process.pid}`;
const PIN_PREFIX = 'vnet-bpftest-';

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Why the BPF tests cannot run here, or null. */
export function unavailableReason(): string | null {
  if (!isRoot()) return 'needs root';
  if (!fs.existsSync('/sys/kernel/btf/vmlinux')) return 'no kernel BTF';
  const bpfDir = path.join(repoDir(), 'bpf');
  if (!fs.existsSync(path.join(bpfDir, 'vnet.bpf.o'))) return 'bpf/vnet.bpf.o not built (npm run build:bpf)';
  return null;
}

export function repoDir(): string {
  // dist/test/bpf/helpers/env.js -> repo
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');
}

export async function ensureBpffs(): Promise<void> {
  if (fs.statfsSync('/sys/fs/bpf').type === BPFFS_MAGIC) return;
  await runOk(['mount', '-t', 'bpf', 'bpf', '/sys/fs/bpf']);
}

/** A fresh pin root path (not created). */
export function pinRootFor(tag: string): string {
  return `/sys/fs/bpf/${PIN_PREFIX}${process.pid}-${tag}`;
}

export function removePinRoot(root: string): void {
  if (!path.basename(root).startsWith(PIN_PREFIX)) throw new Error(`refusing to remove ${root}`);
  fs.rmSync(root, { recursive: true, force: true });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Remove namespaces and pin roots left by test runs whose process is gone. */
export async function cleanupStale(): Promise<void> {
  const list = await run(['ip', 'netns', 'list']);
  for (const line of list.stdout.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = /^vbt(\d+)-/.exec(name);
    if (m && !pidAlive(Number(m[1]))) await run(['ip', 'netns', 'del', name]);
  }
  for (const entry of fs.existsSync('/sys/fs/bpf') ? fs.readdirSync('/sys/fs/bpf') : []) {
    const m = /^vnet-bpftest-(\d+)-/.exec(entry);
    if (m && !pidAlive(Number(m[1]))) fs.rmSync(path.join('/sys/fs/bpf', entry), { recursive: true, force: true });
  }
}

export class Netns {
  readonly path: string;
  private constructor(readonly name: string) {
    this.path = `/var/run/netns/${name}`;
  }

  static async create(tag: string): Promise<Netns> {
    const ns = new Netns(`${PREFIX}-${tag}`);
    await runOk(['ip', 'netns', 'add', ns.name]);
    await ns.ip('link', 'set', 'lo', 'up');
    return ns;
  }

  ip(...args: string[]): Promise<string> {
    return runOk(['ip', '-n', this.name, ...args]);
  }

  exec(...argv: string[]): Promise<string> {
    return runOk(['ip', 'netns', 'exec', this.name, ...argv], { timeoutMs: 20_000 });
  }

  run(...argv: string[]) {
    return run(['ip', 'netns', 'exec', this.name, ...argv], { timeoutMs: 20_000 });
  }

  sysctl(key: string, value: string): Promise<string> {
    return this.exec('sysctl', '-qw', `${key}=${value}`);
  }

  async ifindex(ifname: string): Promise<number> {
    const out = await this.ip('-o', 'link', 'show', 'dev', ifname);
    return Number(out.split(':')[0]);
  }

  async mac(ifname: string): Promise<string> {
    const out = await this.ip('-o', 'link', 'show', 'dev', ifname);
    const m = /link\/ether ([0-9a-f:]{17})/.exec(out);
    if (!m) throw new Error(`no MAC for ${ifname} in ${this.name}`);
    return m[1]!;
  }

  async delete(): Promise<void> {
    await run(['ip', 'netns', 'del', this.name]);
  }
}

export class Background {
  private constructor(private readonly child: ChildProcess, private output: string) {}

  /** Start argv inside ns and wait (bounded) until a stdout line matches ready. */
  static async start(ns: Netns, argv: string[], ready: RegExp, timeoutMs = 10_000): Promise<Background> {
    const child = spawn('ip', ['netns', 'exec', ns.name, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    const bg = new Background(child, '');
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        bg.stop(); // never leave a half-started server behind
        reject(new Error(`${argv.join(' ')} not ready after ${timeoutMs} ms: ${bg.output}`));
      }, timeoutMs);
      const onData = (d: Buffer): void => {
        bg.output += d.toString();
        if (ready.test(bg.output)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', (d: Buffer) => (bg.output += d.toString()));
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${argv.join(' ')} exited ${code}: ${bg.output}`));
      });
    });
    return bg;
  }

  stop(): void {
    if (this.child.pid !== undefined && this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

/** node + the compiled echo helper, for Background.start / Netns.exec. */
export function echoArgv(...args: string[]): string[] {
  return [process.execPath, path.join(path.dirname(fileURLToPath(import.meta.url)), 'echo.js'), ...args];
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
