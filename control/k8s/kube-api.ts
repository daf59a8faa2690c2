// The daemon's few Kubernetes API calls, through @kubernetes/client-node:
// list and watch the node's NodeNetworkConfig and pods, patch the NNC's
// status subresource and the node's NetworkUnavailable condition. Every
// unary call has a deadline so a hung API server never wedges a loop.
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

/** How a watch connection ended: normally (server closed it), or with an error (HTTP status if any). */
export interface WatchEnd {
  error?: unknown;
  statusCode?: number;
}

/** A list + watch pair for one resource collection. */
export interface ListWatch<T extends KubeObject> {
  describe: string;
  list(): Promise<ListResult<T>>;
  watch(resourceVersion: string, onEvent: (event: WatchEvent) => void, signal: AbortSignal): Promise<WatchEnd>;
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

export class KubeApi {
  private readonly custom: CustomObjectsApi;
  private readonly core: CoreV1Api;
  private readonly watcher: Watch;

  constructor(
    readonly kc: KubeConfig,
    readonly timeoutMs = 10_000,
  ) {
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.core = kc.makeApiClient(CoreV1Api);
    this.watcher = new Watch(kc);
  }

  /** Stream one watch until the server closes it, it fails, or `signal` aborts. */
  watch(path: string, query: Record<string, string | number | boolean>, onEvent: (e: WatchEvent) => void, signal: AbortSignal): Promise<WatchEnd> {
    return new Promise<WatchEnd>((resolve) => {
      let settled = false;
      let controller: AbortController | undefined;
      const finish = (end: WatchEnd): void => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        resolve(end);
      };
      const onAbort = (): void => {
        finish({});
        controller?.abort();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.watcher
        .watch(path, query, (type, object) => {
          if (!settled) onEvent({ type, object: object as KubeObject });
        }, (err: unknown) => {
          finish(err ? { error: err, ...(statusOf(err) !== undefined ? { statusCode: statusOf(err) } : {}) } : {});
        })
        .then((c) => {
          controller = c;
          if (settled) c.abort();
        }, (err: unknown) => finish({ error: err }));
    });
  }

  nncListWatch(namespace: string, name: string): ListWatch<NncObject & KubeObject> {
    const fieldSelector = `metadata.name=${name}`;
    return {
      describe: `NodeNetworkConfig ${namespace}/${name}`,
      list: async () => {
        const body = (await withDeadline('list NodeNetworkConfigs', this.timeoutMs, this.custom.listNamespacedCustomObject({
          group: K8S_GROUP, version: K8S_VERSION, namespace, plural: NNC_PLURAL, fieldSelector,
        }))) as { items?: (NncObject & KubeObject)[]; metadata?: { resourceVersion?: string } };
        return { items: body.items ?? [], resourceVersion: body.metadata?.resourceVersion ?? '' };
      },
      watch: (resourceVersion, onEvent, signal) => this.watch(`/apis/${K8S_GROUP}/${K8S_VERSION}/namespaces/${namespace}/${NNC_PLURAL}`, {
        fieldSelector, resourceVersion, allowWatchBookmarks: true, timeoutSeconds: watchTimeoutSeconds(),
      }, onEvent, signal),
    };
  }

  podListWatch(nodeName: string): ListWatch<KubeObject> {
    const fieldSelector = `spec.nodeName=${nodeName}`;
    return {
      describe: `pods on node ${nodeName}`,
      list: async () => {
        const body = await withDeadline('list pods', this.timeoutMs, this.core.listPodForAllNamespaces({ fieldSelector }));
        return { items: body.items as unknown as KubeObject[], resourceVersion: body.metadata?.resourceVersion ?? '' };
      },
      watch: (resourceVersion, onEvent, signal) => this.watch('/api/v1/pods', {
        fieldSelector, resourceVersion, allowWatchBookmarks: true, timeoutSeconds: watchTimeoutSeconds(),
      }, onEvent, signal),
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

/** Ask the server to end each watch after 5-10 minutes (as client-go does) so connections are renewed. */
function watchTimeoutSeconds(): number {
  return 300 + Math.floor(Math.random() * 300);
}
