// kill -9 at a random moment of ADD, DEL and GC (issue #7 item 1). One lab
// VM per dataplane; each iteration picks a VM, standalone or daemon mode and
// a verb, starts the call and kills after a random delay in [0, typical
// duration of that call]: the plugin's whole process group (standalone), or
// the node daemon's (daemon mode; the daemon is then restarted and
// reconciles). The test then acts like kubelet: a failed ADD is retried (or
// given up and DELed), a failed DEL or GC is retried. After every iteration:
// no IP twice (store and pod netns), every live pod reachable from a witness
// pod, and after a GC listing the live pods nothing else is left (store,
// veths, ebtables rules or BPF map entries and routes, pins).
import t from 'tap';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { MODES, azureConflist, type Mode } from '../lab/helpers/cni-harness.js';
import { FaultTally } from './helpers/report.js';
import { Rng, scaled, seedFromEnv } from './helpers/scale.js';
import {
  VmDaemon, DAEMON_SOCKET, errorCode, keyOf, leakProblems, nodeView, pluginCall, resultIp, sleep, staleNeighbours, uniquenessProblems, unreachable,
  type LivePod, type NodeView, type PodRef, type ProcResult, type Verb,
} from './helpers/node-harness.js';

const ITERATIONS = scaled(16, 200);
/** Pods alive at once per VM besides the witness (bounded: the VM's pool and the per-iteration checks). */
const MAX_LIVE = 6;
/** kubelet keeps retrying; we stop after this many attempts and fail the test. */
const MAX_ATTEMPTS = 6;
const tally = new FaultTally('kill-random');

type Exec = 'standalone' | 'daemon';

interface Node {
  vm: string;
  mode: Mode;
  daemon: VmDaemon;
  conf: Record<Exec, Record<string, unknown>>;
  witness: LivePod;
  live: Map<string, LivePod>;
  pins: string[];
  /** successful call durations (ms) by `${exec} ${verb}`, newest last */
  durations: Map<string, number[]>;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 500;
}

/** Where the killed call got to, read from the store and the kernel before anything repairs it. */
function addPhase(v: NodeView, pod: PodRef, res: ProcResult, exec: Exec): string {
  if (res.code === 0) return exec === 'daemon' ? 'daemon killed before or after serving it' : 'finished before the kill';
  const ep = v.endpoints[keyOf(pod)];
  if (!ep) return 'before the intent was recorded';
  if (ep.phase === 'ready') return 'after ready, result not printed';
  const veth = v.hostVeths.includes(ep.hostVeth);
  const attached = v.ebDnat.some((r) => r.ip === ep.ip) || (v.bpfEndpoints ?? []).includes(ep.ip);
  const inPod = (v.podAddrs.get(pod.netns) ?? []).length > 0;
  return !veth ? 'after the intent, before the veth' : attached ? 'after attach' : inPod ? 'after pod config' : 'after the veth';
}

function delPhase(v: NodeView, pod: PodRef, res: ProcResult, exec: Exec): string {
  if (res.code === 0) return exec === 'daemon' ? 'daemon killed before or after serving it' : 'finished before the kill';
  const ep = v.endpoints[keyOf(pod)];
  if (!ep) return 'after the store update, not answered';
  if (ep.phase === 'ready') return 'before the delete mark';
  const attached = v.ebDnat.some((r) => r.ip === ep.ip) || (v.bpfEndpoints ?? []).includes(ep.ip);
  return v.hostVeths.includes(ep.hostVeth) ? (attached ? 'after the mark' : 'after detach') : 'after the veth';
}

t.test('random kill -9 of ADD, DEL and GC: standalone and daemon, both dataplanes', async (t) => {
  const seed = seedFromEnv();
  const rng = new Rng(seed);
  t.comment(`seed ${seed} (replay with VNET_FAULTS_SEED=${seed}), ${ITERATIONS} iterations, modes ${MODES.join(',')}`);
  const lab = await Lab.up(defaultSpec(MODES.length, 24));
  const nodes: Node[] = [];
  t.teardown(async () => {
    for (const n of nodes) await n.daemon.stop();
    await lab.down();
  });

  let podSeq = 0;
  const newPod = async (vm: string): Promise<PodRef> => {
    const name = `k${podSeq++}`;
    return { name, containerId: `kill-${name}`, ifName: 'eth0', netns: await lab.addPodNetns(vm, name) };
  };
  const record = (n: Node, exec: Exec, verb: Verb, ms: number): void => {
    const k = `${exec} ${verb}`;
    const xs = n.durations.get(k) ?? [];
    xs.push(ms);
    if (xs.length > 15) xs.shift();
    n.durations.set(k, xs);
  };
  /** Run a call without a kill, retrying like kubelet; returns the successful result and how many attempts it took. */
  const untilOk = async (n: Node, exec: Exec, verb: Verb, pod?: PodRef, valid?: PodRef[]): Promise<{ res: ProcResult; attempts: number }> => {
    let res: ProcResult | undefined;
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      res = await pluginCall(lab, n.vm, verb, n.conf[exec], pod, valid).done;
      if (res.code === 0) {
        record(n, exec, verb, res.ms);
        return { res, attempts: attempt };
      }
      await sleep(200 * attempt);
    }
    throw new Error(`${verb} ${pod?.name ?? ''} in ${n.vm} (${exec}) failed ${MAX_ATTEMPTS} times; last: ${res?.stdout} ${res?.stderr.slice(-500)}`);
  };
  const addOk = async (n: Node, exec: Exec, pod: PodRef): Promise<{ pod: LivePod; attempts: number }> => {
    const { res, attempts } = await untilOk(n, exec, 'ADD', pod);
    const ip = resultIp(res);
    if (!ip) throw new Error(`ADD ${pod.name}: no IP in ${res.stdout}`);
    return { pod: { ...pod, ip }, attempts };
  };

  for (const [i, mode] of MODES.entries()) {
    const vm = `vm${i + 1}`;
    const base = { cniVersion: '1.1.0', dataplane: mode, portmap: false } as const;
    const daemon = new VmDaemon(lab, vm);
    await daemon.start();
    const n: Node = {
      vm, mode, daemon, live: new Map(), pins: [], durations: new Map(),
      conf: { standalone: azureConflist(base), daemon: azureConflist({ ...base, extra: { daemonSocket: DAEMON_SOCKET } }) },
      witness: undefined as unknown as LivePod,
    };
    nodes.push(n);
    n.witness = (await addOk(n, 'standalone', await newPod(vm))).pod;
    n.pins = (await nodeView(lab, vm)).pins;
    // Calibrate the typical duration of each call in each execution mode.
    for (const exec of ['standalone', 'daemon'] as Exec[]) {
      for (let k = 0; k < 3; k++) await untilOk(n, exec, 'VERSION');
      const p = (await addOk(n, exec, await newPod(vm))).pod;
      await untilOk(n, exec, 'GC', undefined, [n.witness]);
      await untilOk(n, exec, 'DEL', p);
      await lab.removePodNetns(p.netns);
    }
    t.comment(`${vm} (${mode}) typical ms: ${[...n.durations].map(([k, v]) => `${k} ${median(v)}`).join(', ')}`);
  }

  const landedBy = new Map<string, number>();
  let retries = 0;
  const started = Date.now();
  for (let it = 0; it < ITERATIONS; it++) {
    const n = nodes[it % nodes.length]!;
    const exec: Exec = rng.chance(0.5) ? 'daemon' : 'standalone';
    const others = [...n.live.values()];
    const verb: Verb = others.length === 0 ? 'ADD' : others.length >= MAX_LIVE ? rng.pick(['DEL', 'GC'] as const) : rng.pick(['ADD', 'ADD', 'DEL', 'GC'] as const);
    // Half the kills anywhere in [0, typical]; half after the plugin's start-up
    // (a VERSION call's duration), where the verb's own work happens.
    const typical = median(n.durations.get(`${exec} ${verb}`) ?? []);
    const startup = Math.min(typical, median(n.durations.get(`${exec} VERSION`) ?? []));
    const delay = rng.chance(0.5) ? rng.int(typical + 1) : startup + rng.int(typical - startup + 1);
    const label = `#${it} ${n.vm}/${n.mode} ${exec} ${verb} kill at ${delay}/${typical} ms`;

    let target: PodRef | undefined;
    let forgotten: LivePod[] = [];
    if (verb === 'ADD') target = await newPod(n.vm);
    if (verb === 'DEL') target = rng.pick(others);
    if (verb === 'GC') forgotten = others.filter(() => rng.chance(0.5)).slice(0, 3);
    if (verb === 'GC' && forgotten.length === 0) forgotten = [rng.pick(others)];
    const valid = verb === 'GC' ? [n.witness, ...others.filter((p) => !forgotten.includes(p))] : undefined;

    const call = pluginCall(lab, n.vm, verb, n.conf[exec], target, valid);
    await sleep(delay);
    let landed: boolean;
    if (exec === 'standalone') landed = call.kill();
    else landed = !call.exited() && (await n.daemon.kill9());
    const res = await call.done;
    const before = await nodeView(lab, n.vm);
    const phase = verb === 'ADD' ? addPhase(before, target!, res, exec) : verb === 'DEL' ? delPhase(before, target!, res, exec) : res.code === 0 ? 'finished, or daemon killed before or after serving it' : `${forgotten.filter((p) => before.endpoints[keyOf(p)]).length}/${forgotten.length} stale left`;
    // A plugin whose daemon died before it connected runs the call in-process (standalone fallback).
    const callOutcome = res.code === 0 ? 'call succeeded' : res.signal ? 'call killed' : `call failed (code ${errorCode(res) ?? res.code})`;
    if (exec === 'daemon' && !n.daemon.pid) await n.daemon.start(); // restart: reconcile runs before READY
    if (landed) landedBy.set(`${exec} ${verb}`, (landedBy.get(`${exec} ${verb}`) ?? 0) + 1);

    // kubelet's side
    let outcome: string;
    if (verb === 'ADD') {
      const ip = resultIp(res);
      if (ip) {
        n.live.set(keyOf(target!), { ...target!, ip });
        outcome = 'pod up';
      } else if (rng.chance(0.75)) {
        const { pod, attempts } = await addOk(n, exec, target!);
        retries += attempts;
        n.live.set(keyOf(pod), pod);
        outcome = 'retried ADD, pod up';
      } else {
        const { attempts } = await untilOk(n, exec, 'DEL', target);
        retries += attempts;
        await lab.removePodNetns(target!.netns);
        outcome = 'gave up, DELed';
      }
    } else if (verb === 'DEL') {
      if (res.code !== 0) retries += (await untilOk(n, exec, 'DEL', target)).attempts;
      else record(n, exec, 'DEL', res.ms);
      n.live.delete(keyOf(target!));
      await lab.removePodNetns(target!.netns);
      outcome = res.code === 0 ? 'pod gone' : 'retried DEL, pod gone';
    } else {
      if (res.code !== 0) retries += (await untilOk(n, exec, 'GC', undefined, valid)).attempts;
      else record(n, exec, 'GC', res.ms);
      for (const p of forgotten) {
        n.live.delete(keyOf(p));
        await lab.removePodNetns(p.netns);
      }
      outcome = res.code === 0 ? 'stale pods gone' : 'retried GC, stale pods gone';
    }

    // invariants
    const live = [n.witness, ...n.live.values()];
    const view = await nodeView(lab, n.vm);
    const problems = uniquenessProblems(view, live);
    const fromWitness = await unreachable(n.witness.netns, [...n.live.values()].map((p) => p.ip));
    const stale = n.mode === 'iptables' ? await staleNeighbours(n.witness.netns, fromWitness, view) : [];
    const lost = [...fromWitness.filter((ip) => !stale.includes(ip)), ...(await unreachable(lab.vmInfo(n.vm).netnsPath, [n.witness.ip]))];
    if (lost.length) problems.push(`unreachable: ${lost.join(' ')}`);
    // A reused IP must be announced (gratuitous ARP at attach): a neighbour still caching the old MAC is a failure.
    if (stale.length) problems.push(`neighbour caches an old MAC for reused ${stale.join(' ')}`);
    await untilOk(n, exec, 'GC', undefined, live);
    problems.push(...leakProblems(await nodeView(lab, n.vm), live, n.mode, n.pins));
    t.same(problems, [], `${label}: ${phase}; ${callOutcome}; ${outcome}; ${live.length} live`);
    tally.add(`${exec}, ${n.mode}`, `kill -9 during ${verb}: ${landed ? phase : 'kill too late'}`, problems.length ? `INVARIANT BROKEN (${callOutcome})` : `${callOutcome}; ${outcome}; no leak`);
  }
  const perIteration = Math.round((Date.now() - started) / ITERATIONS);
  t.comment(`kills landed: ${[...landedBy].map(([k, v]) => `${k} ${v}`).join(', ')}; kubelet attempts after a kill ${retries}; ${perIteration} ms per iteration`);

  // Everything off: the nodes return to their state before the first pod.
  for (const n of nodes) {
    for (const p of [n.witness, ...n.live.values()]) await untilOk(n, 'daemon', 'DEL', p);
    n.live.clear();
    await untilOk(n, 'daemon', 'GC', undefined, []);
    t.same(leakProblems(await nodeView(lab, n.vm), [], n.mode), [], `${n.vm}: nothing left after the last DEL`);
  }
  tally.flush({ seed, iterations: ITERATIONS, 'ms per iteration': perIteration, 'kubelet attempts after kills': retries });
});
