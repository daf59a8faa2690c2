// TEST ONLY: azure-vnet with the crash and pause points of fault-hooks.ts.
// The lab suites exec `node dist/test/lab/helpers/faulty-plugin.js` in place
// of bin/azure-vnet where they need a call to die or wait at a known step;
// the rest is the real plugin (skel, validation, the in-process Agent).
import { guardStdout } from '../../../cni/output.js';
import { runPlugin } from '../../../cni/skel.js';
import { createLocalAgent } from '../../../control/agent/index.js';
import { faultHooksFromEnv } from './fault-hooks.js';

const stdout = guardStdout();
const faults = faultHooksFromEnv();
const code = await runPlugin({
  plugin: 'azure-vnet',
  stdout,
  agentFactory: async (config, logger) => createLocalAgent(config, logger, faults ? { faults } : {}),
});
await stdout.flush();
process.exit(code);
