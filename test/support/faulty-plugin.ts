// TEST ONLY: azure-vnet with the crash and pause points of fault-hooks.ts.
// The lab and fault suites exec `node dist/test/support/faulty-plugin.js` in
// place of bin/azure-vnet where they need a call to die or wait at a known
// step: the real CNI front end (cni/skel.ts runPlugin, the product's stdout
// guard) and the in-process Agent, never forwarded to a daemon.
import { guardStdout } from '../../cni/output.js';
import { readStdin, runPlugin } from '../../cni/skel.js';
import { createLocalAgent } from '../../control/agent/index.js';
import { createLogger } from '../../control/log.js';
import { faultHooksFromEnv } from './fault-hooks.js';

const stdout = guardStdout();
const faults = faultHooksFromEnv();
const code = await runPlugin({
  plugin: 'azure-vnet',
  stdin: await readStdin(process.stdin),
  stdout,
  agentFactory: async (config, logger) => createLocalAgent(config, logger, faults ? { faults } : {}),
  loggerFactory: (config, name) => createLogger({ file: config.logFile, level: config.logLevel, name }),
});
await stdout.flush();
process.exit(code);
