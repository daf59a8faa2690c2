// The daemon's few Kubernetes API calls, through @kubernetes/client-node:
// list and watch the node's NodeNetworkConfig and pods (this node's, or the
// whole cluster's for NetworkPolicy, with namespaces and networkpolicies), patch the NNC's
// status subresource and the node's NetworkUnavailable condition. Every
// unary call has a deadline so a hung API server never wedges a loop, and so
// does every watch: one from the request to the response headers, one on its
// whole life (timeoutSeconds plus a margin), with TCP keepalive on its socket
// from the moment it is created.
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  Watch,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { InvalidConfigError, TryAgainError } from '../errors.js';
import { FIELD_MANAGER, K8S_GROUP, K8S_VERSION, NNC_PLURAL } from './constants.js';
import type { NncObject } from './nnc-pool.js';

/** A Kubernetes object as the watch hands it over (only what the daemon reads). */
export interface KubeObject {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; uid?: string; labels?: Record<string, string>; generation?: number };
  [key: string]: unknown;
}

export interface ListResult<T> {
  items: T[];
  resourceVersion: string;
}

export interface WatchEvent {
  type: string;
  object: KubeObject;
}

/**
 * How a watch connection ended: normally (server closed it), or with an error
 * (HTTP status if any). `timedOut`: the client tore it down itself, because no
 * response headers came within the deadline ('headers', an error) or because it
 * outlived timeoutSeconds plus the margin ('life', not an error: watch again).
 */
export interface WatchEnd {
  error?: unknown;
  statusCode?: number;
  timedOut?: 'headers' | 'life';
}

/** A list + watch pair for one resource collection. */
export interface ListWatch<T extends KubeObject> {
  describe: string;
  /** Short resource name, the `watch` label of the metrics (e.g. `pods`). */
  resource: string;
  list(): Promise<ListResult<T>>;
  /** `onOpen`: the server answered 200 and the stream is open. */
  watch(resourceVersion: string, onEvent: (event: WatchEvent) => void, signal: AbortSignal, onOpen?: () => void): Promise<WatchEnd>;
}

export interface NodeCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  lastHeartbeatTime: string;
}

/** --kubeconfig FILE, else the pod's service account (KUBERNETES_SERVICE_HOST set), else an error. */
export function loadKubeConfig(kubeconfig: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfig) {
    try {
      kc.loadFromFile(kubeconfig);
    } catch (err) {
      throw new InvalidConfigError(`cannot load kubeconfig ${kubeconfig}: ${(err as Error).message}`, { cause: err });
    }
  } else if (process.env.KUBERNETES_SERVICE_HOST) {
    kc.loadFromCluster();
  } else {
    throw new InvalidConfigError('no Kubernetes API: pass --kubeconfig FILE or run in a pod (KUBERNETES_SERVICE_HOST unset)');
  }
  if (!kc.getCurrentCluster()) throw new InvalidConfigError(`kubeconfig ${kubeconfig ?? '(in-cluster)'} names no current cluster`);
  return kc;
}

/** The HTTP status of a failed client-node call (ApiException.code, or the watch's statusCode). */
export function statusOf(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown } | null;
  if (e && typeof e.code === 'number') return e.code;
  if (e && typeof e.statusCode === 'number') return e.statusCode;
  return undefined;
}

function withDeadline<T>(what: string, ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TryAgainError(`Kubernetes API: ${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

/** The bounds on every watch (injectable so tests run them in milliseconds). */
export interface WatchTiming {
  /** From sending the request to the response headers; past it the request is torn down (an error: back off). */
  headersTimeoutMs: number;
  /** The timeoutSeconds asked of the server for each watch. */
  timeoutSeconds(): number;
  /** How long past timeoutSeconds a watch may live before the client tears it down itself. */
  lifeMarginMs: number;
  /** TCP keepalive probe delay on the watch's socket, set when the socket is created. */
  keepAliveMs: number;
}

/** Ask the server to end each watch after 5-10 minutes (as client-go does) so connections are renewed. */
export const DEFAULT_WATCH_TIMING: WatchTiming = {
  headersTimeoutMs: 30_000,
  timeoutSeconds: () => 300 + Math.floor(Math.random() * 300),
  lifeMarginMs: 30_000,
  keepAliveMs: 30_000,
};

/** Raised when a watch got no response headers in time. */
export class WatchHeadersTimeout extends TryAgainError {}

type Connect = (options: unknown, cb?: (err: Error | null, s?: unknown) => void) => unknown;

/**
 * The KubeConfig a Watch uses for one request: the same cluster, TLS and
 * credentials, but the fresh agent client-node makes for each watch is handed
 * to `onAgent` (so a hung request can be torn down by destroying it: no
 * AbortController exists before the headers arrive) and turns TCP keepalive
 * on for each socket as it is created, not once a response arrives.
 */
function watchConfig(kc: KubeConfig, keepAliveMs: number, onAgent: (agent: http.Agent) => void): KubeConfig {
  const wrapped = Object.create(kc) as KubeConfig;
  wrapped.applyToFetchOptions = async (opts) => {
    const init = await kc.applyToFetchOptions(opts);
    const agent = init.agent as unknown as (Omit<http.Agent, 'createConnection'> & { createConnection?: Connect }) | undefined;
    if (agent && typeof agent === 'object' && typeof agent.createConnection === 'function') {
      const create = agent.createConnection.bind(agent);
      const keepAlive = (s: unknown): void => void (s as Socket | undefined)?.setKeepAlive?.(true, keepAliveMs);
      agent.createConnection = (options: unknown, cb?: (err: Error | null, s?: unknown) => void) => {
        const socket = create(options, cb ? (err: Error | null, s?: unknown) => { keepAlive(s); cb(err, s); } : undefined);
        keepAlive(socket);
        return socket;
      };
      onAgent(agent as unknown as http.Agent);
    }
    return init;
  };
  return wrapped;
}

export class KubeApi {
  private readonly custom: CustomObjectsApi;
  private readonly core: CoreV1Api;
  readonly watchTiming: WatchTiming;

  constructor(
    readonly kc: KubeConfig,
    readonly timeoutMs = 10_000,
    watchTiming: Partial<WatchTiming> = {},
  ) {
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.core = kc.makeApiClient(CoreV1Api);
    this.watchTiming = { ...DEFAULT_WATCH_TIMING, ...watchTiming };
  }

  /**
   * Stream one watch until the server closes it, it fails, `signal` aborts, or
   * one of its deadlines passes. Always settles: whatever the server does, the
   * caller gets control back within headersTimeoutMs (no headers) or
   * timeoutSeconds + lifeMarginMs (a stream that never ends), and the
   * connection is torn down.
   */
  watch(path: string, query: Record<string, string | number | boolean>, onEvent: (e: WatchEvent) => void, signal: AbortSignal, onOpen?: () => void): Promise<WatchEnd> {
    const timing = this.watchTiming;
    const timeoutSeconds = timing.timeoutSeconds();
    return new Promise<WatchEnd>((resolve) => {
      let settled = false;
      let controller: AbortController | undefined;
      let agent: http.Agent | undefined;
      const teardown = (): void => {
        controller?.abort();
        agent?.destroy();
      };
      const finish = (end: WatchEnd): void => {
        if (settled) return;
        settled = true;
        clearTimeout(headersTimer);
        clearTimeout(lifeTimer);
        signal.removeEventListener('abort', onAbort);
        teardown();
        resolve(end);
      };
      const onAbort = (): void => finish({});
      const headersTimer = setTimeout(() => finish({
        error: new WatchHeadersTimeout(`Kubernetes API: watch ${path} got no response headers within ${timing.headersTimeoutMs} ms`), timedOut: 'headers',
      }), timing.headersTimeoutMs);
      const lifeTimer = setTimeout(() => finish({ timedOut: 'life' }), timeoutSeconds * 1000 + timing.lifeMarginMs);
      if (signal.aborted) return finish({});
      signal.addEventListener('abort', onAbort, { once: true });
      new Watch(watchConfig(this.kc, timing.keepAliveMs, (a) => (agent = a)))
        .watch(path, { ...query, timeoutSeconds }, (type, object) => {
          if (!settled) onEvent({ type, object: object as KubeObject });
        }, (err: unknown) => {
          finish(err ? { error: err, ...(statusOf(err) !== undefined ? { statusCode: statusOf(err) } : {}) } : {});
        })
        .then((c) => {
          // Watch.watch resolves once the response headers are in (or the request failed).
          clearTimeout(headersTimer);
          controller = c;
          if (settled) teardown();
          else onOpen?.();
        }, (err: unknown) => finish({ error: err }));
    });
  }

  nncListWatch(namespace: string, name: string): ListWatch<NncObject & KubeObject> {
    const fieldSelector = `metadata.name=${name}`;
    return {
      describe: `NodeNetworkConfig ${namespace}/${name}`,
      resource: 'nodenetworkconfig',
      list: async () => (await this.rawList('list NodeNetworkConfigs', `/apis/${K8S_GROUP}/${K8S_VERSION}/namespaces/${namespace}/${NNC_PLURAL}`, { fieldSelector })) as ListResult<NncObject & KubeObject>,
      watch: (resourceVersion, onEvent, signal, onOpen) => this.watch(`/apis/${K8S_GROUP}/${K8S_VERSION}/namespaces/${namespace}/${NNC_PLURAL}`, {
        fieldSelector, resourceVersion, allowWatchBookmarks: true,
      }, onEvent, signal, onOpen),
    };
  }

  /**
   * GET a collection as the API server sent it, with the cluster, TLS and
   * credentials of the kubeconfig (client-node's applyToFetchOptions, as its
   * Watch does). client-node's typed list calls rename fields on the way in
   * (a NetworkPolicy rule's `from` becomes `_from`) and drop unknown ones,
   * while watch events arrive as plain JSON: reading lists raw hands both
   * paths the same objects. Torn down at the unary deadline (the request
   * and its socket, not only the promise: a silent server leaks nothing).
   */
  private async rawList(what: string, path: string, query: Record<string, string>): Promise<ListResult<KubeObject>> {
    const cluster = this.kc.getCurrentCluster();
    if (!cluster) throw new InvalidConfigError('kubeconfig names no current cluster');
    const url = new URL(cluster.server + path);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    const init = await this.kc.applyToFetchOptions({});
    const headers: Record<string, string> = { Accept: 'application/json' };
    for (const [k, v] of init.headers as unknown as Iterable<[string, string]>) headers[k] = v;
    const body = await new Promise<string>((resolve, reject) => {
      const req = (url.protocol === 'https:' ? https : http).request(url, { method: 'GET', headers, ...(init.agent ? { agent: init.agent as http.Agent } : {}) }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode === 200) return resolve(text);
          let message = text.slice(0, 200);
          try {
            const said = (JSON.parse(text) as { message?: unknown }).message;
            if (typeof said === 'string') message = said;
          } catch {
            // not a Status object: keep the text
          }
          reject(Object.assign(new Error(`Kubernetes API: ${what}: HTTP ${res.statusCode}: ${message}`), { statusCode: res.statusCode }));
        });
      });
      const timer = setTimeout(() => req.destroy(new TryAgainError(`Kubernetes API: ${what} took longer than ${this.timeoutMs} ms`)), this.timeoutMs);
      req.on('error', reject);
      req.on('close', () => clearTimeout(timer));
      req.end();
    });
    const list = JSON.parse(body) as { items?: KubeObject[]; metadata?: { resourceVersion?: string } };
    return { items: list.items ?? [], resourceVersion: list.metadata?.resourceVersion ?? '' };
  }

  /** This node's pods (fieldSelector spec.nodeName), or with no node name every pod of the cluster (policy peers). */
  podListWatch(nodeName?: string): ListWatch<KubeObject> {
    const query: Record<string, string> = nodeName ? { fieldSelector: `spec.nodeName=${nodeName}` } : {};
    return {
      describe: nodeName ? `pods on node ${nodeName}` : 'pods (all namespaces)',
      resource: 'pods',
      list: () => this.rawList('list pods', '/api/v1/pods', query),
      watch: (resourceVersion, onEvent, signal, onOpen) => this.watch('/api/v1/pods', {
        ...query, resourceVersion, allowWatchBookmarks: true,
      }, onEvent, signal, onOpen),
    };
  }

  /** Every namespace (namespaceSelector peers match their labels). */
  namespaceListWatch(): ListWatch<KubeObject> {
    return {
      describe: 'namespaces',
      resource: 'namespaces',
      list: () => this.rawList('list namespaces', '/api/v1/namespaces', {}),
      watch: (resourceVersion, onEvent, signal, onOpen) => this.watch('/api/v1/namespaces', {
        resourceVersion, allowWatchBookmarks: true,
      }, onEvent, signal, onOpen),
    };
  }

  /** Every networking.k8s.io/v1 NetworkPolicy of the cluster. */
  networkPolicyListWatch(): ListWatch<KubeObject> {
    return {
      describe: 'networkpolicies (all namespaces)',
      resource: 'networkpolicies',
      list: () => this.rawList('list networkpolicies', '/apis/networking.k8s.io/v1/networkpolicies', {}),
      watch: (resourceVersion, onEvent, signal, onOpen) => this.watch('/apis/networking.k8s.io/v1/networkpolicies', {
        resourceVersion, allowWatchBookmarks: true,
      }, onEvent, signal, onOpen),
    };
  }

  /** Replace the NNC's status through the status subresource (a JSON patch "add" works whether status exists or not). */
  async patchNncStatus(namespace: string, name: string, status: unknown): Promise<void> {
    await withDeadline('patch NodeNetworkConfig status', this.timeoutMs, this.custom.patchNamespacedCustomObjectStatus({
      group: K8S_GROUP, version: K8S_VERSION, namespace, plural: NNC_PLURAL, name,
      body: [{ op: 'add', path: '/status', value: status }], fieldManager: FIELD_MANAGER,
    }, setHeaderOptions('Content-Type', PatchStrategy.JsonPatch)));
  }

  /** Set one node condition; a strategic merge patch merges conditions by type, so kubelet's own conditions stay. */
  async patchNodeCondition(nodeName: string, condition: NodeCondition): Promise<void> {
    await withDeadline('patch node status', this.timeoutMs, this.core.patchNodeStatus({
      name: nodeName, body: { status: { conditions: [condition] } }, fieldManager: FIELD_MANAGER,
    }, setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch)));
  }
}

