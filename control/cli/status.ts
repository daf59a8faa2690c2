// `vnetctl status`: CNI STATUS through the node daemon with the installed
// conflist, for the DaemonSet's probes. Exit 0 when ready, 1 with the reason
// on stderr otherwise. Never falls back to an in-process agent: the probe is
// about the daemon. The call is an INVOKE like any CNI call (the daemon
// validates it and runs the plugin's STATUS), with the azure-vnet entry of the
// conflist on stdin as libcni would pass it, at cniVersion 1.1.0 (the first
// with STATUS) whatever the conflist says: the probe asks the plugin itself.
//
//   vnetctl status [--conflist F] [--socket P] [--live] [--timeout-ms N]
//
// --live (the liveness probe): the daemon only has to answer; a STATUS that
// comes back with a CNI error (pool source down, no free IP) still counts as
// alive, so a wireserver outage never restarts the daemon.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseNetConf } from '../../cni/config.js';
import { isObject, type Json } from '../../cni/validate.js';
import type { NetConf } from '../../cni/types.js';

export const DEFAULT_CONFLIST = '/etc/cni/net.d/10-azure.conflist';
const DEFAULT_SOCKET = '/run/vnet-cni/daemon.sock';

export const STATUS_OPTIONS = {
  conflist: { type: 'string', default: DEFAULT_CONFLIST },
  socket: { type: 'string' },
  live: { type: 'boolean', default: false },
  'timeout-ms': { type: 'string', default: '10000' },
} as const;

/** The azure-vnet entry of a conflist file, as libcni would pass it (name and cniVersion injected). */
export function pluginEntry(file: string): Json {
  const list = JSON.parse(readFileSync(file, 'utf8')) as unknown;
  if (!isObject(list) || !Array.isArray(list.plugins)) throw new Error(`${file} is not a conflist (no "plugins" list)`);
  const entry = list.plugins.find((p): p is Record<string, unknown> => isObject(p) && p.type === 'azure-vnet');
  if (!entry) throw new Error(`${file} has no azure-vnet plugin entry`);
  return { ...entry, name: list.name, cniVersion: list.cniVersion };
}

/** That entry, validated. */
export function loadPluginConfig(file: string): NetConf {
  return parseNetConf(pluginEntry(file), 'azure-vnet');
}

interface Out {
  write(text: string): unknown;
}

export async function runStatusCli(argv: string[], out: { stdout: Out; stderr: Out } = process): Promise<number> {
  const { values } = parseArgs({ args: argv, options: STATUS_OPTIONS, strict: true });
  const fail = (why: string): number => {
    out.stderr.write(`not ${values.live ? 'alive' : 'ready'}: ${why}\n`);
    return 1;
  };
  let config: NetConf;
  let entry: Json;
  try {
    entry = pluginEntry(values.conflist);
    config = parseNetConf(entry, 'azure-vnet');
  } catch (err) {
    return fail(`conflist ${values.conflist}: ${(err as Error).message}`);
  }
  const socket = values.socket ?? config.daemonSocket ?? DEFAULT_SOCKET;
  const timeoutMs = Math.max(100, Number(values['timeout-ms']) || 10_000);
  const { invokeDaemon } = await import('../daemon/client.js');
  const stdin = Buffer.from(JSON.stringify({ ...entry, cniVersion: '1.1.0' }));
  let outcome;
  try {
    outcome = await invokeDaemon(socket, { stdin, env: { CNI_COMMAND: 'STATUS' }, plugin: 'azure-vnet' }, { connectTimeoutMs: Math.min(timeoutMs, 2000), answerTimeoutMs: timeoutMs });
  } catch (err) {
    const code = (err as { cniCode?: number }).cniCode;
    return fail(`${(err as Error).message}${code !== undefined ? ` (CNI code ${code})` : ''}`);
  }
  if (!outcome.ran) return fail(outcome.why);
  if (outcome.exitCode === 0) {
    out.stdout.write(`ready: daemon ${socket} answered STATUS for network ${config.name} (${config.dataplane})\n`);
    return 0;
  }
  // The plugin's CNI error document.
  let doc: { code?: unknown; msg?: unknown } = {};
  try {
    doc = JSON.parse(outcome.stdout.toString('utf8')) as typeof doc;
  } catch {
    doc = { msg: outcome.stdout.toString('utf8').trim() };
  }
  if (values.live) {
    out.stdout.write(`alive: daemon ${socket} answered (STATUS: code ${String(doc.code)} ${String(doc.msg)})\n`);
    return 0;
  }
  return fail(`${String(doc.msg)} (CNI code ${String(doc.code)})`);
}
