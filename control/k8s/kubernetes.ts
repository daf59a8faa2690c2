// The daemon's Kubernetes side, wired together: the NodeNetworkConfig watch
// feeding the pool cache (and the allocator through Agent.refresh), the pod
// watch feeding pod UID/labels into endpoint records, the coalesced status
// write-back and the node's NetworkUnavailable condition; with
// `networkPolicy` on, the NetworkPolicy source too (namespaces and policies
// watched, the pod watch widened to the whole cluster and shared). Nothing
// here is on a CNI call's path: calls read caches and mark the status dirty.
import type { Logger } from 'pino';
import type { Agent } from '../agent/agent.js';
import type { IpamConfig } from '../types.js';
import type { PoolSource } from '../ipam/types.js';
import { linkInfo } from '../netlink/ip.js';
import { CachedPoolSource } from './cached-pool-source.js';
import { DEFAULT_NNC_NAMESPACE } from './constants.js';
import { KubeApi, loadKubeConfig, type KubeObject } from './kube-api.js';
import { ConditionReporter, type Readiness } from './node-condition.js';
import { poolFromNnc, type NncObject } from './nnc-pool.js';
import { PodCache } from './pod-cache.js';
import { createKubernetesPolicySource, type KubernetesPolicySource } from './policy-source.js';
import { Reflector, type WatchHealth } from './reflector.js';
import { StatusWriter, nncStatusOf } from './status-writer.js';
import type { BackoffOptions } from './backoff.js';

export interface KubernetesOptions {
  nodeName: string;
  kubeconfig?: string;
  namespace?: string;
  /** coalescing window of the status write-back */
  statusDebounceMs?: number;
  conditionPeriodMs?: number;
  /** the VM NIC checked for readiness before any pod gave the daemon a conflist */
  master?: string;
  apiTimeoutMs?: number;
  backoff?: BackoffOptions;
  /**
   * Watch NetworkPolicies, namespaces and every pod of the cluster, and offer
   * them as `policySource` (off by default: a cluster-wide pod watch costs
   * memory and RBAC on namespaces/networkpolicies).
   */
  networkPolicy?: boolean;
  logger: Logger;
}

/** Verbs after which the NNC status may have changed. */
const CHANGING_VERBS = new Set(['ADD', 'DEL', 'GC', 'IPAM_ADD', 'IPAM_DEL']);

export class KubernetesIntegration {
  readonly pool: CachedPoolSource;
  readonly pods: PodCache;
  /** The NetworkPolicy source (with `networkPolicy` on), sharing the pod watch. */
  readonly policySource: KubernetesPolicySource | undefined;
  readonly api: KubeApi;
  readonly namespace: string;
  private agent: Agent | undefined;
  private generation: number | undefined;
  private objectUid: string | undefined;
  private readonly nncReflector: Reflector<NncObject & KubeObject>;
  private readonly podReflector: Reflector<KubeObject>;
  readonly status: StatusWriter;
  readonly condition: ConditionReporter;
  private readonly log: Logger;

  constructor(readonly opts: KubernetesOptions) {
    this.log = opts.logger.child({ component: 'kubernetes' });
    this.namespace = opts.namespace ?? DEFAULT_NNC_NAMESPACE;
    this.api = new KubeApi(loadKubeConfig(opts.kubeconfig), opts.apiTimeoutMs ?? 10_000);
    const nnc = this.api.nncListWatch(this.namespace, opts.nodeName);
    this.pool = new CachedPoolSource(nnc.describe);
    this.nncReflector = new Reflector({ source: nnc, logger: this.log, ...(opts.backoff ? { backoff: opts.backoff } : {}), onChange: (items) => this.nncChanged([...items.values()][0]) });
    // NetworkPolicy peers are pods anywhere in the cluster: one cluster-wide pod watch then serves both.
    this.pods = new PodCache(opts.networkPolicy ? opts.nodeName : undefined);
    this.podReflector = new Reflector({
      source: this.api.podListWatch(opts.networkPolicy ? undefined : opts.nodeName), logger: this.log, ...(opts.backoff ? { backoff: opts.backoff } : {}),
      onChange: (items, change) => {
        if (this.pods.update(items, change)) this.annotate();
      },
    });
    this.policySource = opts.networkPolicy
      ? createKubernetesPolicySource(this.api, { logger: this.log, ...(opts.backoff ? { backoff: opts.backoff } : {}), pods: this.podReflector })
      : undefined;
    this.status = new StatusWriter({
      debounceMs: opts.statusDebounceMs ?? 1000,
      logger: this.log,
      ...(opts.backoff ? { backoff: opts.backoff } : {}),
      compute: async () => (this.agent && this.pool.synced ? nncStatusOf(await this.agent.store.peek(), this.generation) : undefined),
      write: (status) => this.api.patchNncStatus(this.namespace, opts.nodeName, status),
    });
    this.condition = new ConditionReporter({
      periodMs: opts.conditionPeriodMs ?? 10_000,
      logger: this.log,
      check: () => this.readiness(),
      patch: (condition) => this.api.patchNodeCondition(opts.nodeName, condition),
    });
  }

  /** The agent's pool source override: the watch cache for `kubernetes` configs. */
  poolSourceFor = (ipam: IpamConfig): PoolSource | undefined => (ipam.environment === 'kubernetes' ? this.pool : undefined);

  start(agent: Agent): void {
    this.agent = agent;
    this.nncReflector.start();
    this.podReflector.start();
    void this.policySource?.start();
    this.condition.start();
  }

  /** After each daemon request (never waits). */
  afterRequest = (verb: string, ok: boolean): void => {
    if (ok && CHANGING_VERBS.has(verb)) this.status.markDirty();
    if (verb === 'ADD' && ok) this.annotate();
    // Kubelet/the runtime asking STATUS is a good moment to re-check; ADD/DEL are left to the timer so a storm adds no work.
    if (verb === 'STATUS') void this.condition.poke();
  };

  /** What the watches have done, for DUMP and debugging. */
  stats(): Record<string, unknown> {
    return {
      nodeNetworkConfig: { ...this.nncReflector.stats, poolSynced: this.pool.synced, generation: this.generation },
      pods: { ...this.podReflector.stats, known: this.pods.size },
      statusWriter: { ...this.status.stats },
      nodeCondition: { ...this.condition.stats },
      ...this.policySource?.stats(),
      watches: this.watchHealth(),
    };
  }

  /** Each watch's age, last event and failure streak (metrics, `vnetctl debug kubernetes`). */
  watchHealth(): WatchHealth[] {
    const now = Date.now();
    return [this.nncReflector.health(now), this.podReflector.health(now), ...(this.policySource?.health(now) ?? [])];
  }

  private nncChanged(obj: NncObject | undefined): void {
    if (!obj) {
      this.pool.unusable(`${this.pool.describe} does not exist`);
      this.log.warn({ object: this.pool.describe }, 'NodeNetworkConfig missing; keeping the last synced pool');
      return;
    }
    try {
      const pool = poolFromNnc(obj);
      this.pool.set(pool);
      this.generation = obj.metadata.generation;
      // A re-created object starts with no status: write ours even if it equals what the old one had.
      if (obj.metadata.uid !== this.objectUid) this.status.forget();
      this.objectUid = obj.metadata.uid;
      this.log.info({ resourceVersion: obj.metadata.resourceVersion, addresses: pool.addresses.length }, 'NodeNetworkConfig synced');
    } catch (err) {
      this.pool.unusable((err as Error).message);
      this.log.error({ err: (err as Error).message }, 'NodeNetworkConfig rejected; keeping the last good pool');
      return;
    }
    // Apply to the allocator now (added IPs allocatable, removed free IPs gone, removed in-use IPs orphaned).
    void this.agent
      ?.refresh()
      .then(() => this.status.markDirty(), (err: unknown) => this.log.warn({ err }, 'applying the new pool failed'))
      .then(() => this.condition.poke());
  }

  private annotate(): void {
    void this.agent
      ?.annotatePods(this.pods.lookup)
      .then((changed) => {
        if (changed > 0) this.status.markDirty();
      }, (err: unknown) => this.log.warn({ err }, 'recording pod UID/labels failed'));
  }

  private async readiness(): Promise<Readiness> {
    const agent = this.agent;
    if (!agent) return { ready: false, message: 'daemon starting' };
    const config = (await agent.store.peek()).node?.config;
    if (config) {
      try {
        await agent.status(config, { requireFreeIp: false });
        return { ready: true, message: '' };
      } catch (err) {
        return { ready: false, message: (err as Error).message };
      }
    }
    // No pod yet, so no conflist seen: the NIC and the pool are what STATUS would check.
    const master = this.opts.master ?? 'eth0';
    if (!(await linkInfo(master))) return { ready: false, message: `host interface ${master} not found` };
    if (!this.pool.synced) return { ready: false, message: `${this.pool.describe} not synced from the API yet` };
    return { ready: true, message: '' };
  }

  async stop(): Promise<void> {
    this.status.stop();
    await this.policySource?.stop();
    await Promise.all([this.nncReflector.stop(), this.podReflector.stop(), this.condition.stop()]);
  }
}
