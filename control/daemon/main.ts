// `vnetctl daemon`: the node's long-lived control plane. It owns the store,
// the pool poller and the dataplane, reconciles on start, and serves the CNI
// binaries over a root-only unix socket.
import { parseArgs } from 'node:util';
import { createLogger } from '../log.js';
import { createLocalAgent } from '../agent/index.js';
import { DaemonServer } from './server.js';
import { assertSafeNetns } from '../agent/safety.js';

export const DEFAULT_SOCKET = '/run/vnet-cni/daemon.sock';

export async function runDaemon(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      socket: { type: 'string', default: DEFAULT_SOCKET },
      'state-dir': { type: 'string', default: '/var/lib/vnet-cni' },
      'log-file': { type: 'string', default: '/var/log/vnet-cni-daemon.log' },
      'log-level': { type: 'string', default: 'info' },
      'poll-seconds': { type: 'string', default: '30' },
    },
  });
  assertSafeNetns();
  const logger = createLogger({ file: values['log-file']!, level: values['log-level']!, name: 'vnet-cni-daemon' });
  const agent = createLocalAgent({ stateDir: values['state-dir']! }, logger);
  try {
    await agent.reconcile();
  } catch (err) {
    logger.error({ err }, 'reconcile on start failed; serving anyway');
  }
  const server = new DaemonServer({ socketPath: values.socket!, agent, logger });
  await server.listen();
  logger.info({ socket: values.socket, pid: process.pid }, 'daemon listening');
  // Supervisors (systemd notify wrappers, the lab, tests) wait for this line.
  process.stdout.write(`READY ${values.socket}\n`);
  const pollMs = Math.max(1, Number(values['poll-seconds'])) * 1000;
  const poller = setInterval(() => {
    agent.refresh().catch((err: unknown) => logger.warn({ err }, 'pool refresh failed'));
  }, pollMs);
  poller.unref();
  await new Promise<void>((resolve) => {
    const stop = (): void => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  clearInterval(poller);
  await server.close();
  logger.info('daemon stopped');
  return 0;
}
