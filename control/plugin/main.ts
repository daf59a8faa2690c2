// The plugin binaries' composition root (azure-vnet, azure-vnet-ipam as Node
// processes: the Node launcher bin/<plugin>, run directly or as the native
// shim's fallback). It wires the CNI front end (cni/skel.ts runPlugin) to an
// Agent, or hands the call to the node daemon:
//   - a top-level "daemonSocket" string on stdin and a daemon listening: the
//     raw call (stdin bytes + CNI_* env) goes over as INVOKE, exactly as the
//     native shim sends it, and the daemon's stdout bytes and exit code are
//     this process's; the daemon validates everything;
//   - otherwise (no socket, no daemon, or the daemon did not run the call) the
//     front end runs here with the in-process Agent, loaded only then (the
//     dataplanes, IPAM sources and native addon are most of a call's start-up).
// Tests that need a fake agent have their own entry (test/support/fake-plugin.ts);
// nothing here honours a test hook.
import type { AgentApi, NetConf } from '../../cni/types.js';
import { errorDocument, guardStdout, writeJson, type Writer } from '../../cni/output.js';
import { readStdin, runPlugin } from '../../cni/skel.js';
import { MAX_STDIN_BYTES, type PluginName } from '../../cni/config.js';
import { errorVersion } from '../../cni/version.js';
import { isObject } from '../../cni/validate.js';
import type { Logger } from '../log.js';

/** The top-level "daemonSocket" and "cniVersion" of stdin, if it is a JSON object at all (validation is the front end's). */
function peek(stdin: Buffer): { socket?: string; cniVersion?: unknown } {
  if (stdin.length > MAX_STDIN_BYTES) return {};
  try {
    const v = JSON.parse(stdin.toString('utf8')) as unknown;
    if (!isObject(v)) return {};
    return { ...(typeof v.daemonSocket === 'string' && v.daemonSocket !== '' ? { socket: v.daemonSocket } : {}), cniVersion: v.cniVersion };
  } catch {
    return {};
  }
}

/** Forward to the daemon; the exit code if it ran the call, undefined to run it here. */
async function viaDaemon(plugin: PluginName, stdin: Buffer, stdout: Writer & { writeBytes(b: Uint8Array): void }): Promise<number | undefined> {
  const { socket, cniVersion } = peek(stdin);
  if (socket === undefined) return undefined;
  const { cniEnv, invokeDaemon } = await import('../daemon/client.js');
  try {
    const out = await invokeDaemon(socket, { stdin, env: cniEnv(process.env), plugin });
    if (!out.ran) {
      // As the shim: a daemon that is not there is the normal standalone case; a refusal is worth a word.
      if (out.refused) process.stderr.write(`${plugin}: ${out.why}; running standalone\n`);
      return undefined;
    }
    stdout.writeBytes(out.stdout);
    return out.exitCode > 255 ? 1 : out.exitCode;
  } catch (err) {
    // The daemon may have run it (TryAgainError, code 11) or answered garbage (999): never run it a second time.
    writeJson(stdout, errorDocument(err, errorVersion(cniVersion)));
    return 1;
  }
}

async function localAgent(config: NetConf, logger: Logger): Promise<AgentApi> {
  return (await import('../agent/index.js')).createLocalAgent(config, logger);
}

async function fileLogger(config: NetConf, plugin: PluginName): Promise<Logger> {
  const { createLogger } = await import('../log.js');
  return createLogger({ file: config.logFile, level: config.logLevel, name: plugin });
}

export async function main(plugin: PluginName): Promise<never> {
  const stdout = guardStdout();
  const stdin = await readStdin(process.stdin);
  let code = await viaDaemon(plugin, stdin, stdout);
  if (code === undefined) code = await runPlugin({ plugin, stdin, stdout, agentFactory: localAgent, loggerFactory: fileLogger });
  await stdout.flush();
  process.exit(code);
}
