// The dispatcher: env + stdin in, one JSON document out. Everything is
// validated before the agent is created, so a bad call never touches the node.
import type { AgentApi, CniCall, CniResult, NetConf } from './types.js';
import { VnetError } from './errors.js';
import type { Logger } from 'pino';
import { decodeStdin, MAX_STDIN_BYTES, parseAttachments, parseNetConf, type PluginName } from './config.js';
import { parseCommand, parseEnv, type CniCommand } from './env.js';
import { errorDocument, writeJson, type Writer } from './output.js';
import { errorVersion, formatResult, LATEST_VERSION, negotiateVersion, parsePrevResult, requireVerbSupport, versionInfo } from './version.js';

export interface RunPluginOptions {
  plugin: PluginName;
  /** Called once per call, after validation. The logger is the one this call logs to. */
  agentFactory: (config: NetConf, logger: Logger) => Promise<AgentApi>;
  /** Default: process.stdin. */
  stdin?: Buffer | string | NodeJS.ReadableStream;
  /** Default: process.env. */
  env?: NodeJS.ProcessEnv;
  /** Default: process.stdout. */
  stdout?: Writer;
  /** The logger this call logs to (the composition root opens config.logFile). */
  loggerFactory: (config: NetConf, plugin: PluginName) => Logger | Promise<Logger>;
}

/** stdin as bytes, read only until it is known to be too large (decodeStdin then says so). */
export async function readStdin(stdin: Buffer | string | NodeJS.ReadableStream): Promise<Buffer> {
  if (typeof stdin === 'string' || Buffer.isBuffer(stdin)) return Buffer.from(stdin);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stdin) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk);
    size += b.length;
    // Stop reading as soon as the limit is passed; decodeStdin reports it.
    if (size > MAX_STDIN_BYTES) return Buffer.concat([...chunks, b]);
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

/** VERSION needs no valid config: a missing or broken stdin still gets the list. */
function requestedVersion(stdin: Buffer): unknown {
  try {
    return decodeStdin(stdin).cniVersion;
  } catch {
    return undefined;
  }
}

interface Dispatch {
  command: Exclude<CniCommand, 'VERSION'>;
  plugin: PluginName;
  agent: AgentApi;
  call: CniCall;
  raw: Record<string, unknown>;
}

async function dispatch({ command, plugin, agent, call, raw }: Dispatch): Promise<CniResult | undefined> {
  const ipam = plugin === 'azure-vnet-ipam';
  switch (command) {
    case 'ADD':
      return ipam ? agent.ipamAdd(call) : agent.add(call);
    case 'DEL':
      await (ipam ? agent.ipamDel(call) : agent.del(call));
      return undefined;
    case 'CHECK':
      // No IPAM-only check in AgentApi: the agent's CHECK covers the allocation too.
      await agent.check(call);
      return undefined;
    case 'GC':
      await agent.gc(call.config, parseAttachments(raw));
      return undefined;
    case 'STATUS':
      await agent.status(call.config);
      return undefined;
  }
}

/** Run one plugin call; resolves with the process exit code (0 or 1). Never rejects. */
export async function runPlugin(options: RunPluginOptions): Promise<number> {
  const env = options.env ?? process.env;
  const stdout = options.stdout ?? process.stdout;
  let cniVersion: string = LATEST_VERSION;
  let logger: Logger | undefined;
  const started = Date.now();
  try {
    const command = parseCommand(env);
    const bytes = await readStdin(options.stdin ?? process.stdin);
    if (command === 'VERSION') {
      writeJson(stdout, versionInfo(requestedVersion(bytes)));
      return 0;
    }
    const raw = decodeStdin(bytes);
    cniVersion = errorVersion(raw.cniVersion);
    const version = negotiateVersion(raw.cniVersion);
    requireVerbSupport(command, version);
    const cniEnv = parseEnv(command, env);
    const config = parseNetConf(raw, options.plugin, { refuse: command === 'ADD' });
    const call: CniCall = { containerId: cniEnv.containerId, netns: cniEnv.netns, ifName: cniEnv.ifName, args: cniEnv.args, config };
    if (raw.prevResult !== undefined && raw.prevResult !== null) call.prevResult = parsePrevResult(raw.prevResult);
    if (command === 'GC') parseAttachments(raw); // validate before the agent exists

    logger = await options.loggerFactory(config, options.plugin);
    logger.info({ command, cniVersion: version, containerId: call.containerId, ifName: call.ifName, netns: call.netns, args: call.args }, 'call');
    const agent = await options.agentFactory(config, logger);
    let result: CniResult | undefined;
    try {
      result = await dispatch({ command, plugin: options.plugin, agent, call, raw });
    } finally {
      await agent.close().catch((err: unknown) => logger?.warn({ err }, 'agent close failed'));
    }
    if (command === 'ADD') {
      if (result === undefined) throw new VnetError('agent returned no result for ADD');
      writeJson(stdout, formatResult(result, version));
    }
    logger.info({ command, containerId: call.containerId, ms: Date.now() - started }, 'done');
    return 0;
  } catch (err) {
    const doc = errorDocument(err, cniVersion);
    logger?.error({ err, code: doc.code, ms: Date.now() - started }, 'failed');
    writeJson(stdout, doc);
    return 1;
  }
}
