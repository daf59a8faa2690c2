// The plugin's fast path to the node daemon: connect and hand back a
// RemoteAgent, or undefined when the daemon is not there. This module and
// what it imports (client, codec, protobufjs/light) is all a forwarded CNI
// call loads; the in-process Agent is imported only by the caller's fallback.
import type { Logger } from 'pino';
import type { AgentApi } from '../types.js';
import { connectDaemon, RemoteAgent } from './client.js';

export async function connectToDaemon(socketPath: string, logger: Logger): Promise<AgentApi | undefined> {
  try {
    const sock = await connectDaemon(socketPath);
    logger.debug({ socket: socketPath }, 'forwarding to the node daemon');
    return new RemoteAgent(sock);
  } catch (err) {
    logger.info({ err, socket: socketPath }, 'node daemon not reachable; running standalone');
    return undefined;
  }
}
