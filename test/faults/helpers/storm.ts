// ADD/DEL storms through libcni (test/cniclient) against one lab VM's daemon,
// with kubelet's retry behaviour, and the checks every storm test ends with.
import type { Test } from 'tap';
import { Lab } from '../../../lab/lab.js';
import { defaultSpec } from '../../../lab/spec.js';
import { VmCni, azureConflist, type Mode, type PodHandle } from '../../lab/helpers/cni-harness.js';
import { DAEMON_SOCKET, VmDaemon, inParallel, leakProblems, nodeView, sleep, staleNeighbours, uniquenessProblems, unreachable, type LivePod } from './node-harness.js';

/** kubelet retries a failed sandbox forever; a test stops after this many attempts and counts it as given up. */
export const STORM_ATTEMPTS = 8;

export interface StormStats {
  /** calls that failed at least once and were retried */
  retried: number;
  /** total failed attempts */
  failures: number;
  /** pods whose call never succeeded within STORM_ATTEMPTS */
  gaveUp: string[];
  /** distinct error messages seen (first few) */
  errors: string[];
}

export const emptyStats = (): StormStats => ({ retried: 0, failures: 0, gaveUp: [], errors: [] });

export class StormNode {
  readonly cni: VmCni;
  readonly gcCni: VmCni;
  witness: LivePod | undefined;
  pins: string[] = [];
  /** reused IPs the witness could not reach because of a stale ARP entry (a failure: the new pod must announce itself) */
  staleSeen = 0;

  constructor(
    readonly lab: Lab,
    readonly vm: string,
    readonly mode: Mode,
  ) {
    const extra = { daemonSocket: DAEMON_SOCKET };
    this.cni = new VmCni(lab, vm, azureConflist({ cniVersion: '1.0.0', dataplane: mode, extra }));
    // GC needs a 1.1.0 conflist (cniclient runs that chain itself).
    this.gcCni = new VmCni(lab, vm, azureConflist({ cniVersion: '1.1.0', dataplane: mode, portmap: false, extra }), 'gc.conflist');
  }

  private async retry<T>(what: string, stats: StormStats, fn: () => Promise<T>): Promise<T | undefined> {
    for (let attempt = 1; attempt <= STORM_ATTEMPTS; attempt++) {
      try {
        const out = await fn();
        if (attempt > 1) stats.retried++;
        return out;
      } catch (err) {
        stats.failures++;
        const msg = (err as Error).message.replace(/\s+/g, ' ').slice(0, 300);
        if (stats.errors.length < 5 && !stats.errors.some((e) => e.slice(0, 60) === msg.slice(0, 60))) stats.errors.push(msg);
        await sleep(300 * attempt);
      }
    }
    stats.gaveUp.push(what);
    return undefined;
  }

  /** A pod that stays for the whole test: a ping source and the reference for the pin set. */
  async addWitness(): Promise<LivePod> {
    const p = await this.cni.addPod('witness', { containerId: `w-${this.vm}` });
    this.witness = { ...p, name: p.name };
    this.pins = (await nodeView(this.lab, this.vm)).pins;
    return this.witness;
  }

  async addOne(name: string, stats: StormStats): Promise<LivePod | undefined> {
    const netns = await this.lab.addPodNetns(this.vm, name);
    const p = await this.retry(name, stats, () => this.cni.add(name, netns, `st-${this.vm}-${name}`));
    return p ? toLive(p) : undefined;
  }

  async delOne(p: LivePod, stats: StormStats): Promise<boolean> {
    const ok = (await this.retry(p.name, stats, () => this.cni.del(p).then(() => true))) === true;
    if (ok) await this.lab.removePodNetns(p.netns);
    return ok;
  }

  /** `count` ADDs, `inFlight` at a time; onDone after each success (kill triggers). */
  async addStorm(names: string[], inFlight: number, stats: StormStats, onDone?: (done: number) => void): Promise<LivePod[]> {
    let done = 0;
    const pods = await inParallel(names, inFlight, async (n) => {
      const p = await this.addOne(n, stats);
      onDone?.(++done);
      return p;
    });
    return pods.filter((p): p is LivePod => p !== undefined);
  }

  async delStorm(pods: LivePod[], inFlight: number, stats: StormStats, onDone?: (done: number) => void): Promise<LivePod[]> {
    let done = 0;
    const left = await inParallel(pods, inFlight, async (p) => {
      const ok = await this.delOne(p, stats);
      onDone?.(++done);
      return ok ? undefined : p;
    });
    return left.filter((p): p is LivePod => p !== undefined);
  }

  async gc(live: LivePod[]): Promise<string | undefined> {
    const valid = live.map((p) => ({ containerID: p.containerId, ifname: p.ifName }));
    const res = await this.gcCni.client('gc', ['--valid-attachments', JSON.stringify(valid)]);
    return res.code === 0 ? undefined : `GC failed: ${res.stderr.trim().slice(0, 500)}`;
  }

  /** No duplicate IP, every live pod reachable, and after a GC of the live set no leak. */
  async check(live: LivePod[]): Promise<string[]> {
    const all = this.witness ? [this.witness, ...live] : live;
    const view = await nodeView(this.lab, this.vm);
    const problems = uniquenessProblems(view, all);
    const lost = await unreachable(this.lab.vmInfo(this.vm).netnsPath, all.map((p) => p.ip));
    if (lost.length) problems.push(`unreachable from the VM: ${lost.slice(0, 10).join(' ')}${lost.length > 10 ? ` (+${lost.length - 10})` : ''}`);
    if (this.witness && live.length) {
      const fromPod = await unreachable(this.witness.netns, live.map((p) => p.ip));
      // Named apart: an IP the witness caches with another pod's MAC means the new pod was not announced.
      const stale = this.mode === 'iptables' ? await staleNeighbours(this.witness.netns, fromPod, view) : [];
      this.staleSeen += stale.length;
      const lost = fromPod.filter((ip) => !stale.includes(ip));
      if (lost.length) problems.push(`unreachable from the witness pod: ${lost.slice(0, 10).join(' ')}`);
      if (stale.length) problems.push(`the witness caches an old MAC for reused ${stale.slice(0, 10).join(' ')}`);
    }
    const gcErr = await this.gc(all);
    if (gcErr) problems.push(gcErr);
    problems.push(...leakProblems(await nodeView(this.lab, this.vm), all, this.mode, this.pins));
    return problems;
  }
}

function toLive(p: PodHandle): LivePod {
  return { name: p.name, containerId: p.containerId, ifName: p.ifName, netns: p.netns, ip: p.ip };
}

/** One lab VM with room for `addresses` pods, its daemon running and a witness pod; all of it goes with the test. */
export async function daemonStormNode(t: Test, addresses: number, mode: Mode): Promise<{ lab: Lab; daemon: VmDaemon; node: StormNode; witness: LivePod }> {
  const lab = await Lab.up(defaultSpec(1, addresses));
  const daemon = new VmDaemon(lab, 'vm1');
  t.teardown(async () => {
    await daemon.stop();
    await lab.down();
  });
  await daemon.start();
  const node = new StormNode(lab, 'vm1', mode);
  const witness = await node.addWitness();
  return { lab, daemon, node, witness };
}
