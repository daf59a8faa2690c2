// The node's policy engine: the source's snapshot + this node's endpoints →
// the compiled policy of each endpoint, kept current. On every source change
// and every endpoint added or removed it recompiles and hands the endpoints
// whose policy changed (only those) to `apply` (the daemon calls
// Dataplane.applyPolicies under its lock). As the agent's PolicyProvider it
// answers what a new endpoint starts with: a default deny both ways until the
// source's first sync, never "allow".
//
// What counts as applied is what `apply` resolved for: if it throws, the
// endpoints stay marked as differing and the next sync (a change, or the
// retry timer) tries again.
import { compilePolicies, defaultDeny, type CompileResult, type CompileStats, type LocalEndpoint } from './compile.js';
import type { DirectionPolicy, EndpointPolicy, IpFamily, PolicyProblem, PolicyProvider, PolicySource } from './types.js';

// Compiled directions are shared by every endpoint selected alike: their text
// (what "changed?" compares) is computed once per direction object.
const directionText = new WeakMap<DirectionPolicy, string>();
function textOf(d: DirectionPolicy): string {
  let t = directionText.get(d);
  if (t === undefined) directionText.set(d, (t = JSON.stringify(d)));
  return t;
}
/** What identifies an endpoint's programmed policy (equal text = nothing to do). */
function policyKey(e: EndpointPolicy): string {
  return `${e.family}|${e.address}|${e.pod ?? ''}|${textOf(e.ingress)}|${textOf(e.egress)}`;
}

export interface PolicyEngineOptions {
  source: PolicySource & { problems?(): PolicyProblem[] };
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
  /** address → JSON of the policy the kernel has (as far as we know). */
  private readonly applied = new Map<string, string>();
  private readonly appliedPolicy = new Map<string, EndpointPolicy>();
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
  }

  async start(): Promise<void> {
    this.stopped = false;
    this.unsubscribe = this.opts.source.onChange(() => this.kick());
    if (this.opts.ownsSource !== false) await this.opts.source.start();
    this.kick();
    await this.idle();
  }

  /** Stop watching. The kernel keeps the rules it has: nothing opens up. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    if (this.retry) clearTimeout(this.retry);
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
    const locals = [...this.locals.values()].filter((l) => l.address !== ep.address);
    locals.push(ep);
    return compilePolicies(snap, locals, { only: new Set([ep.address]) }).endpoints[0]!;
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
    if (programmed) {
      this.applied.set(ep.address, policyKey(programmed));
      this.appliedPolicy.set(ep.address, programmed);
    } else {
      this.applied.delete(ep.address);
      this.appliedPolicy.delete(ep.address);
    }
    this.kick();
  }

  /** The endpoint is gone (its rules went with detachEndpoint); other pods' peers may change. */
  removeEndpoint(address: string): void {
    if (!this.locals.delete(address)) return;
    this.applied.delete(address);
    this.appliedPolicy.delete(address);
    this.kick();
  }

  endpoints(): LocalEndpoint[] {
    return [...this.locals.values()];
  }

  // -------------------------------------------------------------------------
  // Views
  // -------------------------------------------------------------------------

  status(): PolicyEngineStatus {
    let pending = 0;
    if (this.last) for (const e of this.last.endpoints) if (this.applied.get(e.address) !== policyKey(e)) pending++;
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
    const res = snap ? compilePolicies(snap, locals) : undefined;
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

  private kick(): void {
    if (this.stopped) return;
    this.dirty = true;
    this.dirtySince ??= this.now();
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
      const since = this.dirtySince ?? this.now();
      this.dirtySince = undefined;
      try {
        const changed = this.compile();
        if (changed === undefined) continue;
        if (changed.length > 0) await this.opts.apply(changed);
        for (const e of changed) {
          // Only if the endpoint is still here: a DEL may have raced the apply.
          if (this.locals.has(e.address)) {
            this.applied.set(e.address, policyKey(e));
            this.appliedPolicy.set(e.address, e);
          }
        }
        this.syncs++;
        this.failures = 0;
        this.firstSyncDone = true;
        if (changed.length > 0) {
          this.lastLatency = (this.now() - since) / 1000;
          this.opts.onSyncLatency?.(this.lastLatency, changed.length);
        }
      } catch (err) {
        this.opts.onError?.(err);
        this.dirtySince ??= since;
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

  /** Compile; the endpoints whose policy differs from the applied one. undefined: no snapshot yet. */
  private compile(): EndpointPolicy[] | undefined {
    const snap = this.opts.source.snapshot();
    if (!snap) return undefined;
    const res = compilePolicies(snap, [...this.locals.values()]);
    this.last = res;
    const problems = this.problems();
    const key = JSON.stringify(problems);
    if (key !== this.problemsKey) {
      this.problemsKey = key;
      this.opts.onProblems?.(problems);
    }
    return res.endpoints.filter((e) => this.applied.get(e.address) !== policyKey(e));
  }
}
