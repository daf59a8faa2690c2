// Verb INVOKE: the daemon runs a whole CNI call the way the standalone plugin
// binary does (cni/skel.ts runPlugin: env and config validation, version
// negotiation, result formatting, error documents) on its warm agent, from the
// raw stdin and CNI_* environment a client (the native shim, native/shim/cni-shim.c, or the Node launcher, control/plugin/main.ts)
// forwarded, and hands back the stdout bytes and exit code. One implementation:
// the same input gives the same bytes as `bin/azure-vnet` in its own process.
import type { AgentApi, NetConf } from '../../cni/types.js';
import { DecodeError } from '../../cni/errors.js';
import { pino } from 'pino';
import { createLogger, type Logger } from '../log.js';
import { runPlugin } from '../../cni/skel.js';
import type { PluginName } from '../../cni/config.js';
import type { WireRequest } from './codec.js';

const PLUGINS: readonly PluginName[] = ['azure-vnet', 'azure-vnet-ipam'];
/** Distinct (log file, level, plugin) loggers kept open; a conflist names one, a node has a few. */
const MAX_CALL_LOGGERS = 32;

/**
 * Per-call loggers on the conflist's logFile, as the plugin process would open
 * them, but opened once per file and level: a warm daemon must not open (and
 * leak) a file per call. Past MAX_CALL_LOGGERS the least recently used one
 * is closed and dropped.
 */
export class CallLoggers {
  private readonly byKey = new Map<string, Logger>();

  get(config: NetConf, plugin: PluginName): Logger {
    const key = `${plugin}\0${config.logLevel}\0${config.logFile}`;
    let logger = this.byKey.get(key);
    if (logger) {
      // Most recently used last, so eviction drops the coldest.
      this.byKey.delete(key);
      this.byKey.set(key, logger);
      return logger;
    }
    logger = createLogger({ file: config.logFile, level: config.logLevel, name: plugin, base: { via: 'daemon' } });
    this.byKey.set(key, logger);
    if (this.byKey.size > MAX_CALL_LOGGERS) {
      const [oldKey, old] = this.byKey.entries().next().value as [string, Logger];
      this.byKey.delete(oldKey);
      closeLogger(old);
    }
    return logger;
  }

  closeAll(): void {
    for (const l of this.byKey.values()) closeLogger(l);
    this.byKey.clear();
  }
}

function closeLogger(logger: Logger): void {
  // The logger's destination (a sonic-boom on the file); end() closes the fd (never stderr's).
  const stream = (logger as unknown as Record<symbol, unknown>)[pino.symbols.streamSym] as { end?: () => void; fd?: number } | undefined;
  if (stream?.end && stream.fd !== 2) stream.end();
}

/** The shared agent as runPlugin sees it: close() after a call must not close the daemon's agent. */
function borrowed(agent: AgentApi): AgentApi {
  return {
    add: (call) => agent.add(call),
    del: (call) => agent.del(call),
    check: (call) => agent.check(call),
    gc: (config, valid) => agent.gc(config, valid),
    status: (config) => agent.status(config),
    ipamAdd: (call) => agent.ipamAdd(call),
    ipamDel: (call) => agent.ipamDel(call),
    close: async () => {},
  };
}

export interface InvokeOutcome {
  stdout: Buffer;
  exitCode: number;
}

/** Runs one forwarded call. Throws only for a request that is not a call (then nothing ran). */
export async function invoke(agent: AgentApi, loggers: CallLoggers, req: WireRequest): Promise<InvokeOutcome> {
  const plugin = PLUGINS.find((p) => p === req.plugin);
  if (plugin === undefined) throw new DecodeError(`INVOKE names no known plugin: ${JSON.stringify(req.plugin ?? '')}`);
  const chunks: string[] = [];
  const exitCode = await runPlugin({
    plugin,
    stdin: Buffer.from(req.stdin),
    env: { ...req.env },
    stdout: { write: (text: string) => chunks.push(text) },
    agentFactory: () => Promise.resolve(borrowed(agent)),
    loggerFactory: (config, name) => loggers.get(config, name),
  });
  return { stdout: Buffer.from(chunks.join(''), 'utf8'), exitCode };
}
