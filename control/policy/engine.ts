// The node's policy engine: the source's snapshot + this node's endpoints →
// the compiled policy of each endpoint, kept current. On every source change
// and every endpoint added or removed it brings its compiler up to date (an
// incremental PolicyCompiler: a change costs what it touches) and hands the
// endpoints whose policy changed (only those) to `apply` (the daemon calls
// Dataplane.applyPolicies under its lock). As the agent's PolicyProvider it
// answers what a new endpoint starts with: a default deny both ways until the
// source's first sync, never "allow".
//
// Its list of local endpoints follows the agent's addEndpoint/removeEndpoint;
// with `endpoints` it is also checked against the node store on every sync
// (and every `resyncMs`): a CNI call that ran standalone (the daemon was not
// answering) changes the store only.
//
// What counts as applied is what `apply` resolved for: if it throws, the
// endpoints stay marked as differing and the next sync (a change, or the
// retry timer) tries again.
import { defaultDeny, PolicyCompiler, type CompileResult, type CompileStats, type LocalEndpoint } from './compile.js';
import type { DirectionPolicy, EndpointPolicy, IpFamily, PolicyProblem, PolicyProvider, PolicySource } from './types.js';

// Compiled directions are shared by every endpoint selected alike: their text
// (what "changed?" compares) is computed once per direction object.
const directionText = new WeakMap<DirectionPolicy, string>();
function textOf(d: DirectionPolicy): string {
  let t = directionText.get(d);
  if (t === undefined) directionText.set(d, (t = JSON.stringify(d)));
  return t;
}
/** Equal = nothing to do. The compiler keeps an unchanged endpoint's object, so identity answers most calls. */
function samePolicy(a: EndpointPolicy | undefined, b: EndpointPolicy): boolean {
  if (a === b) return true;
  if (!a || a.family !== b.family || a.address !== b.address || a.pod !== b.pod) return false;
  return (a.ingress === b.ingress || textOf(a.ingress) === textOf(b.ingress)) && (a.egress === b.egress || textOf(a.egress) === textOf(b.egress));
}

function sameLocal(a: LocalEndpoint, b: LocalEndpoint): boolean {
  return a.family === b.family && a.address === b.address && a.namespace === b.namespace && a.name === b.name;
}

export interface PolicyEngineOptions {
  source: PolicySource & { problems?(): PolicyProblem[] };
  /**
   * The node store's ready endpoints (Agent.policyEndpoints): read at the
   * start of every sync to correct the engine's list where a standalone CNI
   * call changed the store behind the daemon's back.
   */
  endpoints?: () => Promise<LocalEndpoint[]>;
  /** With `endpoints`: check the list this often even when nothing changes; default 30 s, 0 = never. */
  resyncMs?: number;
  /** Endpoints the store check added or removed (`endpoints`), for logs. */
  onDrift?: (added: string[], removed: string[]) => void;
  /** Start and stop the source with the engine (default true); false when another part owns it (the Kubernetes watches). */
  ownsSource?: boolean;
  /** Program these endpoints' new policies; resolves once the kernel enforces them. */
  apply: (changed: EndpointPolicy[]) => Promise<void>;
  /** After a failed apply, sync again after this long (doubling while it keeps failing, up to 30x); default 2 s. */
  retryMs?: number;
  /** Each sync that changed something: seconds from the first unsynced change to the end of apply. */
  onSyncLatency?: (seconds: number, changedEndpoints: number) => void;
  /** A new problem set (source and compiler), for logs. */
  onProblems?: (problems: PolicyProblem[]) => void;
  /** A sync failed (compile or apply). */
  onError?: (err: unknown) => void;
  now?: () => number;
}

export interface PolicyEngineStatus {
  /** The source has delivered a snapshot and it has been compiled and applied once. */
  synced: boolean;
  /** Endpoints whose last apply failed (they keep their previous rules). */
  pending: number;
  stats: CompileStats | undefined;
  problems: PolicyProblem[];
  syncs: number;
  lastSyncLatencySeconds: number | undefined;
}

/** What a debug view shows of one endpoint. */
export interface EndpointPolicyView {
  endpoint: LocalEndpoint;
  /** Policies selecting the pod ("namespace/name"). */
  selectedBy: string[];
  /** Compiled now, from the current snapshot. */
  policy: EndpointPolicy;
  /** What was last applied to the kernel (undefined: nothing yet, or unknown). */
  applied: EndpointPolicy | undefined;
}

export class PolicyEngine implements PolicyProvider {
  private readonly locals = new Map<string, LocalEndpoint>();
  /** address → the policy the kernel has (as far as we know). */
  private readonly appliedPolicy = new Map<string, EndpointPolicy>();
  private readonly compiler: PolicyCompiler;
  /** Endpoint list changes by the agent, numbered: a store read does not undo those made while it ran. */
  private endpointChanges = 0;
  private readonly touched = new Map<string, number>();
  private resync: NodeJS.Timeout | undefined;
  private last: CompileResult | undefined;
  private problemsKey = '';
  private running: Promise<void> | undefined;
  private dirty = false;
  private dirtySince: number | undefined;
  private retry: NodeJS.Timeout | undefined;
  private failures = 0;
  private unsubscribe: (() => void) | undefined;
  private stopped = false;
  private syncs = 0;
  private lastLatency: number | undefined;
  private firstSyncDone = false;
  private readonly now: () => number;

  constructor(private readonly opts: PolicyEngineOptions) {
    this.now = opts.now ?? (() => performance.now());
    this.compiler = new PolicyCompiler({ podsAuthoritative: opts.source.podsAuthoritative === true });
  }

  async start(): Promise<void> {
    this.stopped = false;
    this.unsubscribe = this.opts.source.onChange(() => this.kick());
    if (this.opts.ownsSource !== false) await this.opts.source.start();
    const every = this.opts.resyncMs ?? 30_000;
    if (this.opts.endpoints && every > 0) {
      this.resync = setInterval(() => this.kick(false), every);
      this.resync.unref();
    }
    this.kick();
    await this.idle();
  }

  /** Stop watching. The kernel keeps the rules it has: nothing opens up. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    if (this.retry) clearTimeout(this.retry);
    if (this.resync) clearInterval(this.resync);
    if (this.opts.ownsSource !== false) await this.opts.source.stop();
    await this.running?.catch(() => undefined);
  }

  /** Resolves once no sync is running or due. */
  async idle(): Promise<void> {
    while (this.running) await this.running.catch(() => undefined);
  }

  // -------------------------------------------------------------------------
  // PolicyProvider
  // -------------------------------------------------------------------------

  policyFor(pod: { namespace?: string; name?: string; family: IpFamily; address: string }): EndpointPolicy {
    const ep: LocalEndpoint = { family: pod.family, address: pod.address };
    if (pod.namespace) ep.namespace = pod.namespace;
    if (pod.name) ep.name = pod.name;
    const snap = this.opts.source.snapshot();
    if (!snap || !this.firstSyncDone) return defaultDeny(ep);
    // The compiler is brought to this snapshot with the new endpoint among the
    // locals (its address may make it a peer of itself): only what that moves
    // is redone, and the next sync finds it done.
    const locals = [...this.locals.values()].filter((l) => l.address !== ep.address);
    locals.push(ep);
    return this.compiler.update(snap, locals).endpoint(ep.address)!;
  }

  // -------------------------------------------------------------------------
  // Endpoints
  // -------------------------------------------------------------------------

  /**
   * An endpoint now exists on this node. `programmed`: the policy its
   * attachEndpoint put in the kernel (from policyFor); the next sync applies
   * the difference if the policy moved meanwhile. Absent: unknown, so the
   * next sync applies its policy.
   */
  addEndpoint(ep: LocalEndpoint, programmed?: EndpointPolicy): void {
    this.locals.set(ep.address, ep);
    this.touch(ep.address);
    if (programmed) this.appliedPolicy.set(ep.address, programmed);
    else this.appliedPolicy.delete(ep.address);
    this.kick();
  }

  /** The endpoint is gone (its rules went with detachEndpoint); other pods' peers may change. */
  removeEndpoint(address: string): void {
    this.touch(address);
    if (!this.locals.delete(address)) return;
    this.appliedPolicy.delete(address);
    this.kick();
  }

  /** Remember an agent change while a store read may be under way (only with `endpoints`: the read clears old marks). */
  private touch(address: string): void {
    if (this.opts.endpoints) this.touched.set(address, ++this.endpointChanges);
  }

  endpoints(): LocalEndpoint[] {
    return [...this.locals.values()];
  }

  // -------------------------------------------------------------------------
  // Views
  // -------------------------------------------------------------------------

  status(): PolicyEngineStatus {
    let pending = 0;
    if (this.last) for (const e of this.last.endpoints) if (!samePolicy(this.appliedPolicy.get(e.address), e)) pending++;
    return {
      synced: this.firstSyncDone,
      pending,
      stats: this.last?.stats,
      problems: this.problems(),
      syncs: this.syncs,
      lastSyncLatencySeconds: this.lastLatency,
    };
  }

  problems(): PolicyProblem[] {
    return [...(this.opts.source.problems?.() ?? []), ...(this.last?.problems ?? [])];
  }

  /** One endpoint by address or "namespace/name"; all endpoints without an argument. */
  view(which?: string): EndpointPolicyView[] {
    const snap = this.opts.source.snapshot();
    const locals = [...this.locals.values()];
    const res = snap ? this.compiler.update(snap, locals).result() : undefined;
    const out: EndpointPolicyView[] = [];
    locals.forEach((endpoint, i) => {
      const pod = endpoint.namespace && endpoint.name ? `${endpoint.namespace}/${endpoint.name}` : undefined;
      if (which !== undefined && which !== endpoint.address && which !== pod) return;
      out.push({
        endpoint,
        selectedBy: res?.selectedBy.get(endpoint.address) ?? [],
        policy: res?.endpoints[i] ?? defaultDeny(endpoint),
        applied: this.appliedPolicy.get(endpoint.address),
      });
    });
    return out;
  }

  // -------------------------------------------------------------------------
  // Sync
  // -------------------------------------------------------------------------

  /** A sync is due; `measured`: a change waits for it (the periodic store check is none). */
  private kick(measured = true): void {
    if (this.stopped) return;
    this.dirty = true;
    if (measured) this.dirtySince ??= this.now();
    if (this.running) return;
    this.running = this.loop().finally(() => {
      this.running = undefined;
    });
  }

  private async loop(): Promise<void> {
    // Let a burst of notifications coalesce into one compile.
    await new Promise((r) => setImmediate(r));
    while (this.dirty && !this.stopped) {
      this.dirty = false;
      const measured = this.dirtySince !== undefined;
      const since = this.dirtySince ?? this.now();
      this.dirtySince = undefined;
      try {
        await this.checkEndpoints();
        const changed = this.compile();
        if (changed === undefined) continue;
        if (changed.length > 0) await this.opts.apply(changed);
        for (const e of changed) {
          // Only if the endpoint is still here: a DEL may have raced the apply.
          if (this.locals.has(e.address)) this.appliedPolicy.set(e.address, e);
        }
        this.syncs++;
        this.failures = 0;
        this.firstSyncDone = true;
        if (changed.length > 0 && measured) {
          this.lastLatency = (this.now() - since) / 1000;
          this.opts.onSyncLatency?.(this.lastLatency, changed.length);
        }
      } catch (err) {
        this.opts.onError?.(err);
        if (measured) this.dirtySince ??= since;
        this.failures++;
        if (!this.retry && !this.stopped) {
          const base = this.opts.retryMs ?? 2_000;
          this.retry = setTimeout(() => {
            this.retry = undefined;
            this.kick();
          }, base * Math.min(30, 2 ** (this.failures - 1)));
          this.retry.unref();
        }
        return;
      }
    }
  }

  /**
   * Correct the endpoint list from the store: ready endpoints it lacks are
   * added (kernel state unknown: their policy is applied), endpoints the store
   * no longer has as ready are dropped. Endpoints the agent added or removed
   * while the store was being read are left as the agent said.
   */
  private async checkEndpoints(): Promise<void> {
    if (!this.opts.endpoints) return;
    const mark = this.endpointChanges;
    let stored: LocalEndpoint[];
    try {
      stored = await this.opts.endpoints();
    } catch (err) {
      // The list stays as the agent made it; a store that cannot be read must not hold policy changes back.
      this.opts.onError?.(err);
      return;
    }
    const untouched = (address: string): boolean => (this.touched.get(address) ?? 0) <= mark;
    const added: string[] = [];
    const removed: string[] = [];
    const inStore = new Set<string>();
    for (const ep of stored) {
      inStore.add(ep.address);
      const cur = this.locals.get(ep.address);
      if ((cur && sameLocal(cur, ep)) || !untouched(ep.address)) continue;
      this.locals.set(ep.address, ep);
      this.appliedPolicy.delete(ep.address);
      added.push(ep.address);
    }
    for (const address of [...this.locals.keys()]) {
      if (inStore.has(address) || !untouched(address)) continue;
      this.locals.delete(address);
      this.appliedPolicy.delete(address);
      removed.push(address);
    }
    for (const [address, n] of this.touched) if (n <= mark) this.touched.delete(address);
    if (added.length > 0 || removed.length > 0) this.opts.onDrift?.(added, removed);
  }

  /** Compile; the endpoints whose policy differs from the applied one. undefined: no snapshot yet. */
  private compile(): EndpointPolicy[] | undefined {
    const snap = this.opts.source.snapshot();
    if (!snap) return undefined;
    const res = this.compiler.update(snap, [...this.locals.values()]).result();
    this.last = res;
    const problems = this.problems();
    const key = JSON.stringify(problems);
    if (key !== this.problemsKey) {
      this.problemsKey = key;
      this.opts.onProblems?.(problems);
    }
    return res.endpoints.filter((e) => !samePolicy(this.appliedPolicy.get(e.address), e));
  }
}
