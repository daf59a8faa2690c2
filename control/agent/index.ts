// createAgent: what the CNI binaries call. With a configured and live daemon
// socket the call is forwarded to the node daemon; otherwise the same Agent
// runs in-process (standalone mode, for plain Docker/podman hosts).
import type { Logger } from 'pino';
import type { AgentApi, NetConf } from '../types.js';
import { Agent, type AgentOptions } from './agent.js';
import { NodeStore } from '../store/node-store.js';

export async function createAgent(config: NetConf, opts: { plugin: 'azure-vnet' | 'azure-vnet-ipam'; logger: Logger }): Promise<AgentApi> {
  if (config.daemonSocket) {
    // The plugin binary itself goes through cni/main.ts, which tries this before importing this module.
    const { connectToDaemon } = await import('../daemon/forward.js');
    const remote = await connectToDaemon(config.daemonSocket, opts.logger);
    if (remote) return remote;
  }
  return createLocalAgent(config, opts.logger);
}

export function createLocalAgent(config: Pick<NetConf, 'stateDir'>, logger: Logger, extra: Omit<AgentOptions, 'logger'> = {}): Agent {
  return new Agent(new NodeStore(config.stateDir), { logger, ...extra });
}
