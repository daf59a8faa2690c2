// Shared entry for both plugin binaries: guard stdout, run the call, exit.
// The agent module loads only after the call validated, and only when the
// call is not forwarded: with a live daemon the process never imports the
// in-process Agent (dataplanes, IPAM sources, native addon), which is most
// of a CNI call's start-up cost.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AgentApi, NetConf } from '../control/types.js';
import { VnetError } from '../control/errors.js';
import type { Logger } from '../control/log.js';
import type { PluginName } from './config.js';
import { guardStdout } from './output.js';
import { runPlugin } from './skel.js';

type CreateAgent = (config: NetConf, opts: { plugin: PluginName; logger: Logger }) => Promise<AgentApi>;

/**
 * TEST ONLY: VNET_CNI_TEST_AGENT=<absolute path of a module exporting
 * createAgent> replaces the real agent, so tests can run the real binary
 * without touching the node. Never set it in production.
 */
export const TEST_AGENT_ENV = 'VNET_CNI_TEST_AGENT';

async function loadCreateAgent(): Promise<CreateAgent> {
  const hook = process.env[TEST_AGENT_ENV];
  if (hook === undefined || hook === '') return createDefaultAgent;
  if (!path.isAbsolute(hook)) throw new VnetError(`${TEST_AGENT_ENV} must be an absolute path; got ${JSON.stringify(hook)}`);
  const mod = (await import(pathToFileURL(hook).href)) as { createAgent?: unknown };
  if (typeof mod.createAgent !== 'function') throw new VnetError(`${TEST_AGENT_ENV} module ${hook} does not export createAgent`);
  return mod.createAgent as CreateAgent;
}

/** Daemon first (a small import), the in-process Agent only if the daemon is absent. */
async function createDefaultAgent(config: NetConf, opts: { plugin: PluginName; logger: Logger }): Promise<AgentApi> {
  if (config.daemonSocket) {
    const { connectToDaemon } = await import('../control/daemon/forward.js');
    const remote = await connectToDaemon(config.daemonSocket, opts.logger);
    if (remote) return remote;
  }
  return (await import('../control/agent/index.js')).createLocalAgent(config, opts.logger);
}

export async function main(plugin: PluginName): Promise<never> {
  const stdout = guardStdout();
  const code = await runPlugin({
    plugin,
    stdout,
    agentFactory: async (config, logger) => (await loadCreateAgent())(config, { plugin, logger }),
  });
  await stdout.flush();
  process.exit(code);
}
