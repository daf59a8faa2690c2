// createAgent: what the CNI binaries call. Daemon forwarding plugs in here
// later; today every call runs the Agent in-process (standalone mode).
import type { Logger } from 'pino';
import type { AgentApi, NetConf } from '../types.js';
import { Agent } from './agent.js';
import { NodeStore } from '../store/node-store.js';

export async function createAgent(config: NetConf, opts: { plugin: 'azure-vnet' | 'azure-vnet-ipam'; logger: Logger }): Promise<AgentApi> {
  return new Agent(new NodeStore(config.stateDir), { logger: opts.logger });
}
