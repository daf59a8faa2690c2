// `vnetctl status`: CNI STATUS through the node daemon with the installed
// conflist, for the DaemonSet's probes. Exit 0 when ready, 1 with the reason
// on stderr otherwise. Never falls back to an in-process agent: the probe is
// about the daemon.
//
//   vnetctl status [--conflist F] [--socket P] [--live] [--timeout-ms N]
//
// --live (the liveness probe): the daemon only has to answer; a STATUS that
// comes back with a CNI error (pool source down, no free IP) still counts as
// alive, so a wireserver outage never restarts the daemon.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseNetConf } from '../../cni/config.js';
import { isObject } from '../../cni/validate.js';
import type { NetConf } from '../types.js';

export const DEFAULT_CONFLIST = '/etc/cni/net.d/10-azure.conflist';
const DEFAULT_SOCKET = '/run/vnet-cni/daemon.sock';

export const STATUS_OPTIONS = {
  conflist: { type: 'string', default: DEFAULT_CONFLIST },
  socket: { type: 'string' },
  live: { type: 'boolean', default: false },
  'timeout-ms': { type: 'string', default: '10000' },
} as const;

/** The azure-vnet entry of a conflist file, as libcni would pass it (name and cniVersion injected), validated. */
export function loadPluginConfig(file: string): NetConf {
  const list = JSON.parse(readFileSync(file, 'utf8')) as unknown;
  if (!isObject(list) || !Array.isArray(list.plugins)) throw new Error(`${file} is not a conflist (no "plugins" list)`);
  const entry = list.plugins.find((p): p is Record<string, unknown> => isObject(p) && p.type === 'azure-vnet');
  if (!entry) throw new Error(`${file} has no azure-vnet plugin entry`);
  return parseNetConf({ ...entry, name: list.name, cniVersion: list.cniVersion }, 'azure-vnet');
}

export async function runStatusCli(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: STATUS_OPTIONS, strict: true });
  const fail = (why: string): number => {
    process.stderr.write(`not ${values.live ? 'alive' : 'ready'}: ${why}\n`);
    return 1;
  };
  let config: NetConf;
  try {
    config = loadPluginConfig(values.conflist);
  } catch (err) {
    return fail(`conflist ${values.conflist}: ${(err as Error).message}`);
  }
  const socket = values.socket ?? config.daemonSocket ?? DEFAULT_SOCKET;
  const timeoutMs = Math.max(100, Number(values['timeout-ms']) || 10_000);
  const { connectDaemon, RemoteAgent, RemoteError } = await import('../daemon/client.js');
  let agent;
  try {
    agent = new RemoteAgent(await connectDaemon(socket, Math.min(timeoutMs, 2000)), timeoutMs);
  } catch (err) {
    return fail(`daemon socket ${socket}: ${(err as Error).message}`);
  }
  try {
    await agent.status(config);
    process.stdout.write(`ready: daemon ${socket} answered STATUS for network ${config.name} (${config.dataplane})\n`);
    return 0;
  } catch (err) {
    if (values.live && err instanceof RemoteError) {
      process.stdout.write(`alive: daemon ${socket} answered (STATUS: code ${err.cniCode} ${err.message})\n`);
      return 0;
    }
    const code = (err as { cniCode?: number }).cniCode;
    return fail(`${(err as Error).message}${code !== undefined ? ` (CNI code ${code})` : ''}`);
  } finally {
    await agent.close();
  }
}
