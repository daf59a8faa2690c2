// The in-process Agent over the node's store: what the standalone plugin
// (control/plugin/main.ts) and the daemon (control/daemon/main.ts) run.
import type { Logger } from 'pino';
import type { NetConf } from '../../cni/types.js';
import { Agent, type AgentOptions } from './agent.js';
import { NodeStore } from '../store/node-store.js';

export function createLocalAgent(config: Pick<NetConf, 'stateDir'>, logger: Logger, extra: Omit<AgentOptions, 'logger'> = {}): Agent {
  return new Agent(new NodeStore(config.stateDir), { logger, ...extra });
}
