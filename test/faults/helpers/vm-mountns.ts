// A lab VM's mount namespace that stays open across calls, so an environment
// fault (a full tmpfs over the state directory, a read-only remount, bpffs
// unmounted, a per-VM xtables lock) can be set up once and several plugin
// calls made inside it. The namespace is made by lab/vm-exec (a slave of the
// machine's, so nothing mounted here ever reaches the machine) and held by a
// tiny process that exits when its stdin closes, i.e. when the test dies.
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Lab } from '../../../lab/lab.js';
import { vmExecArgv } from '../../../lab/vm-exec.js';
import { startChild, stopChild, waitForLine } from '../../../lab/children.js';
import { run, type ExecResult } from '../../../control/exec.js';
import { CNI_PATH, REPO, linkNamesOf, type PluginRun } from '../../lab/helpers/cni-harness.js';

export class VmMountNs {
  private constructor(
    readonly lab: Lab,
    readonly vm: string,
    readonly pid: number,
    private readonly holder: ChildProcess,
  ) {}

  /** Run `setup` (sh) inside a fresh mount namespace of the VM and keep the namespace open. */
  static async open(lab: Lab, vm: string, setup: string): Promise<VmMountNs> {
    const script = `set -e\n${setup}\necho "READY $$"\nread -r _ || :\n`;
    const holder = startChild(vmExecArgv(lab.names, vm, ['sh', '-c', script]));
    const m = await waitForLine(holder, /^READY (\d+)$/, 30_000, `mount namespace of ${vm}`);
    return new VmMountNs(lab, vm, Number(m[1]), holder);
  }

  private argv(argv: readonly string[]): string[] {
    return ['nsenter', '-t', String(this.pid), '-m', '-n', '--', ...argv];
  }

  /** Run argv in the namespace (the VM's netns and this mount namespace); never rejects on a non-zero exit. */
  exec(argv: readonly string[], opts: { env?: Record<string, string>; input?: string; timeoutMs?: number } = {}): Promise<ExecResult> {
    return run(this.argv(argv), { input: opts.input, timeoutMs: opts.timeoutMs ?? 120_000, env: { ...process.env, VNET_CNI_LAB: '1', ...opts.env } });
  }

  sh(script: string): Promise<ExecResult> {
    return this.exec(['sh', '-c', script]);
  }

  /** A long-running process in the namespace (a daemon, a lock holder). */
  start(argv: readonly string[], env: Record<string, string> = {}): ChildProcess {
    return startChild(this.argv(argv), { env: { ...process.env, VNET_CNI_LAB: '1', ...env } });
  }

  /** Exec bin/<plugin> here like a runtime does; timed. */
  async plugin(env: Record<string, string>, stdin: string, plugin = 'azure-vnet'): Promise<PluginRun & { ms: number }> {
    const started = Date.now();
    const res = await this.exec([path.join(REPO, 'bin', plugin)], { env: { CNI_PATH, ...env }, input: stdin, timeoutMs: 120_000 });
    const ms = Date.now() - started;
    let json: Record<string, unknown> | undefined;
    try {
      json = JSON.parse(res.stdout) as Record<string, unknown>;
    } catch {
      json = undefined;
    }
    return { ...res, json, ms };
  }

  async close(): Promise<void> {
    await stopChild(this.holder);
  }
}

/** What a failed call must leave untouched, seen from inside the namespace: links, the state file, rule counts. */
export async function nsSnapshot(ns: VmMountNs): Promise<{ links: string; state: string; rules: string; tmp: string }> {
  const links = await ns.exec(['ip', '-o', 'link', 'show']);
  const state = await ns.sh('cat /var/lib/vnet-cni/state.json 2>/dev/null || echo "(none)"');
  const rules = await ns.sh('iptables-save 2>/dev/null | grep -c "^-A" ; ebtables -t nat -L 2>/dev/null | grep -c "^-"');
  const tmp = await ns.sh('ls -a /var/lib/vnet-cni | grep "\\.tmp$" || true');
  return { links: linkNamesOf(links.stdout), state: state.stdout, rules: rules.stdout.trim(), tmp: tmp.stdout.trim() };
}
