// `vnetctl daemon`: the node's long-lived control plane. It owns the store,
// the pool poller and the dataplane, reconciles on start, and serves the CNI
// binaries over a root-only unix socket.
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createLogger } from '../log.js';
import { createLocalAgent } from '../agent/index.js';
import type { AgentOptions } from '../agent/agent.js';
import { DaemonServer } from './server.js';
import { startNode } from './startup.js';
import { servedAgent } from './served.js';
import { assertSafeNetns } from '../agent/safety.js';
import { InvalidConfigError } from '../errors.js';
import { DaemonMetrics, DEFAULT_METRICS_SOCKET, ebpfStats, parseMetricsAddr } from './metrics.js'; // metrics (control/daemon/metrics.ts)
import type { Logger } from '../log.js';
import type { NodePolicy } from '../policy/node.js';
import type { KubernetesIntegration } from '../k8s/kubernetes.js';

export const DEFAULT_SOCKET = '/run/vnet-cni/daemon.sock';

/** The daemon's flags (exported: the DaemonSet test checks its command against them). */
export const DAEMON_OPTIONS = {
  socket: { type: 'string', default: DEFAULT_SOCKET },
  'state-dir': { type: 'string', default: '/var/lib/vnet-cni' },
  'log-file': { type: 'string', default: '/var/log/vnet-cni-daemon.log' },
  'log-level': { type: 'string', default: 'info' },
  'poll-seconds': { type: 'string', default: '30' },
  /** How often idle NAT state is swept (ebpf; docs/ebpf.md "NAT expiry"). */
  'nat-sweep-seconds': { type: 'string', default: '60' },
  // how often to release the endpoints of pods that died without a DEL (control/agent/reclaim.ts)
  'reclaim-seconds': { type: 'string', default: '60' },
  'metrics-socket': { type: 'string', default: DEFAULT_METRICS_SOCKET },
  'metrics-addr': { type: 'string' },
  // Kubernetes (control/k8s): on when --node-name is given
  'node-name': { type: 'string' },
  kubeconfig: { type: 'string' },
  'nnc-namespace': { type: 'string' },
  'status-debounce-ms': { type: 'string', default: '1000' },
  'condition-seconds': { type: 'string', default: '10' },
  master: { type: 'string', default: 'eth0' },
  'api-backoff-ms': { type: 'string', default: '500' },
  'api-backoff-max-ms': { type: 'string', default: '30000' },
  // NetworkPolicy (control/policy, docs/policy.md): from a watched directory, or from the Kubernetes API
  'policy-dir': { type: 'string' },
  'network-policy': { type: 'boolean', default: false },
  // Turn policy off on a node that enforced it (opens every endpoint). Without it and without a source, such a node keeps its rules.
  'disable-network-policy': { type: 'boolean', default: false },
} as const;

/** Parse `vnetctl daemon` arguments; throws on an unknown flag or a missing value, like the daemon itself. */
export function parseDaemonArgs(argv: string[]): ReturnType<typeof parseArgs<{ args: string[]; options: typeof DAEMON_OPTIONS }>>['values'] {
  return parseArgs({ args: argv, options: DAEMON_OPTIONS, strict: true }).values;
}

/**
 * Keep V8's young generation at its initial size. V8 doubles the semi-spaces
 * whenever a scavenge finds them busy, up to 16 MiB each, and never gives the
 * pages back: a daemon that lives as long as the node then carries 30+ MiB of
 * committed, mostly empty heap after a few bursts of CNI calls (measured in the
 * soak: V8 heap used flat at 15-25 MiB, committed 16 -> 50 MiB). The flag is
 * read at each growth decision, so setting it at run time takes effect (unlike
 * --max-semi-space-size, which is fixed when the heap is set up); scavenges
 * get more frequent, and they are sub-millisecond for the daemon's short-lived
 * per-call garbage.
 */
export function capYoungGeneration(): void {
  v8.setFlagsFromString('--semi-space-growth-factor=1');
}

/** A full, synchronous GC (V8's gc(), reached without starting node with --expose-gc); process.memoryUsage() after it. */
export function forceGc(): NodeJS.MemoryUsage {
  v8.setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
  return process.memoryUsage();
}

/** The policy engine, when asked for: --policy-dir (a watched directory) or --network-policy (the Kubernetes integration's policy source). */
async function nodePolicy(
  values: ReturnType<typeof parseDaemonArgs>,
  k8s: KubernetesIntegration | undefined,
  logger: Logger,
  metrics: DaemonMetrics,
): Promise<NodePolicy | undefined> {
  if (!values['policy-dir'] && !values['network-policy']) return undefined;
  const { NodePolicy } = await import('../policy/node.js');
  if (values['network-policy']) {
    const source = k8s?.policySource;
    if (!source) throw new InvalidConfigError('--network-policy needs --node-name (the Kubernetes API)');
    return new NodePolicy({ kubernetes: source, logger, registry: metrics.registry });
  }
  return new NodePolicy({ dir: values['policy-dir']!, logger, registry: metrics.registry });
}

/** `testHooks`: only test entry points pass them (test/support/faulty-daemon.ts); `vnetctl daemon` never does. */
export async function runDaemon(argv: string[], testHooks: Pick<AgentOptions, 'faults'> = {}): Promise<number> {
  const values = parseDaemonArgs(argv);
  const reclaimSeconds = Number(values['reclaim-seconds']);
  if (!Number.isFinite(reclaimSeconds) || reclaimSeconds <= 0) throw new InvalidConfigError(`--reclaim-seconds must be a positive number of seconds; got '${values['reclaim-seconds']}'`);
  assertSafeNetns();
  capYoungGeneration();
  const logger = createLogger({ file: values['log-file'], level: values['log-level'], name: 'vnet-cni-daemon' });
  if (values['network-policy'] && values['policy-dir']) throw new InvalidConfigError('--network-policy and --policy-dir are exclusive: policy comes from the Kubernetes API or from a directory');
  if (values['network-policy'] && !values['node-name']) throw new InvalidConfigError('--network-policy needs --node-name (the Kubernetes API)');
  if (values['disable-network-policy'] && (values['network-policy'] || values['policy-dir'])) {
    throw new InvalidConfigError('--disable-network-policy turns policy off: it cannot go with --network-policy or --policy-dir');
  }
  // Loaded only when asked for, so a daemon without Kubernetes never pays for the client.
  const k8s = values['node-name']
    ? new (await import('../k8s/kubernetes.js')).KubernetesIntegration({
      nodeName: values['node-name'],
      ...(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {}),
      ...(values['nnc-namespace'] ? { namespace: values['nnc-namespace'] } : {}),
      statusDebounceMs: Math.max(0, Number(values['status-debounce-ms'])),
      conditionPeriodMs: Math.max(0.2, Number(values['condition-seconds'])) * 1000,
      master: values.master,
      backoff: { initialMs: Math.max(10, Number(values['api-backoff-ms'])), maxMs: Math.max(10, Number(values['api-backoff-max-ms'])), maxErrors: 10 },
      ...(values['network-policy'] ? { networkPolicy: true } : {}),
      logger,
    })
    : undefined;
  // metrics: parse the address before anything else can fail half-started
  const metricsAddr = values['metrics-addr'] ? parseMetricsAddr(values['metrics-addr']) : { socketPath: values['metrics-socket'] };
  const metrics = new DaemonMetrics({ state: () => agent.dump(), dataplane: ebpfStats, ...(k8s ? { watches: () => k8s.watchHealth() } : {}) }, logger);
  const policy = await nodePolicy(values, k8s, logger, metrics);
  const agent = createLocalAgent({ stateDir: values['state-dir'] }, logger, {
    ...testHooks,
    ...(k8s ? { poolSourceFor: k8s.poolSourceFor, podInfo: k8s.pods.lookup } : {}),
    ...(policy ? { policy: policy.engine } : {}),
  });
  // Reconcile, then policy over the reconciled endpoints (or the hold, or --disable-network-policy).
  const started = await startNode(agent, { ...(policy ? { policy } : {}), disablePolicy: values['disable-network-policy'], logger, registry: metrics.registry });
  metrics.recordReconcile(started.reconcile);
  const onRequest = k8s
    ? (verb: string, ok: boolean, seconds: number, code?: number): void => {
      metrics.onRequest(verb, ok, seconds, code);
      k8s.afterRequest(verb, ok);
    }
    : metrics.onRequest;
  // DUMP carries the watches' counters beside the store when Kubernetes is on, the policy engine's view, and a policy hold (which also fails STATUS).
  const served = servedAgent(agent, { ...(k8s ? { kubernetes: k8s } : {}), ...(policy ? { policy } : {}), ...(started.policyHold ? { policyHold: started.policyHold } : {}) });
  const server = new DaemonServer({ socketPath: values.socket, agent: served, logger, onRequest });
  await server.listen();
  k8s?.start(served); // its node condition asks STATUS: a policy hold shows there too
  await metrics.listen(metricsAddr);
  logger.info({ metrics: metricsAddr }, 'metrics listening');
  logger.info({ socket: values.socket, pid: process.pid }, 'daemon listening');
  // Supervisors (systemd notify wrappers, the lab, tests) wait for this line.
  process.stdout.write(`READY ${values.socket}\n`);
  const pollMs = Math.max(1, Number(values['poll-seconds'])) * 1000;
  const poller = setInterval(() => {
    agent.refresh().catch((err: unknown) => logger.warn({ err }, 'pool refresh failed'));
  }, pollMs);
  poller.unref();
  // Idle SNAT pairs go before the LRU has to evict for a new flow (which could pick a live, idle-looking one).
  const sweepMs = Math.max(1, Number(values['nat-sweep-seconds'])) * 1000;
  const sweeper = setInterval(() => {
    agent.expireIdle().then(
      (swept) => {
        if (swept && (swept.nat || swept.inbound)) logger.debug(swept, 'idle NAT state swept');
      },
      (err: unknown) => logger.warn({ err }, 'NAT sweep failed'),
    );
  }, sweepMs);
  sweeper.unref();
  const reclaimMs = Math.max(1, reclaimSeconds) * 1000;
  let reclaiming = false; // one pass at a time, however slow
  const reclaimer = setInterval(() => {
    if (reclaiming) return;
    reclaiming = true;
    agent.reclaim().catch((err: unknown) => logger.warn({ err }, 'reclaiming dead endpoints failed')).finally(() => { reclaiming = false; });
  }, reclaimMs);
  reclaimer.unref();
  // SIGUSR2: a full GC, then the memory figures in the log and the metrics. A
  // leak check compares live heap, not whatever garbage the last GC left.
  const onUsr2 = (): void => logger.info({ memory: forceGc() }, 'memory after a forced GC (SIGUSR2)');
  process.on('SIGUSR2', onUsr2);
  await new Promise<void>((resolve) => {
    const stop = (): void => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  clearInterval(poller);
  clearInterval(sweeper);
  clearInterval(reclaimer);
  process.off('SIGUSR2', onUsr2);
  await server.close();
  await k8s?.status.flush().catch(() => {});
  await policy?.stop(); // the kernel keeps the rules: nothing opens up while the daemon is away
  await k8s?.stop();
  await metrics.close();
  logger.info('daemon stopped');
  return 0;
}
