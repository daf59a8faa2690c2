// TEST ONLY: a plugin process with a fake agent behind the real CNI front end
// (cni/skel.ts runPlugin, with the same stdout guard as the product entry
// control/plugin/main.ts). Tests spawn it where they need a whole process
// (stdout hygiene, the libcni client, the shim's exec fallback) without
// touching the node; the shipped binaries honour no such hook.
//
//   node dist/test/support/fake-plugin.js [azure-vnet|azure-vnet-ipam]
// steered by env vars only tests set:
//   VNET_CNI_FAKE_LOG    file to append one JSON line per agent call
//   VNET_CNI_FAKE_ERROR  '<ErrorClassName>:<message>' makes every verb throw it
//   VNET_CNI_FAKE_NOISE  '1' makes every verb print junk on stdout (console.log
//                        and process.stdout.write): the plugin must divert it
import fs from 'node:fs';
import { guardStdout } from '../../cni/output.js';
import { readStdin, runPlugin } from '../../cni/skel.js';
import { createLogger } from '../../control/log.js';
import { errorFromSpec, fakeAgent, type FakeCall, type FakeOptions } from '../unit/cni-fake-agent.js';

const plugin = process.argv[2] === 'azure-vnet-ipam' ? 'azure-vnet-ipam' : 'azure-vnet';
const stdout = guardStdout();
const logFile = process.env.VNET_CNI_FAKE_LOG;
const record = (c: FakeCall): void => {
  if (logFile) fs.appendFileSync(logFile, `${JSON.stringify(c)}\n`);
};
const options: FakeOptions = { noise: process.env.VNET_CNI_FAKE_NOISE === '1' };
const error = errorFromSpec(process.env.VNET_CNI_FAKE_ERROR);
if (error) options.error = error;

const code = await runPlugin({
  plugin,
  stdin: await readStdin(process.stdin),
  stdout,
  agentFactory: async (config) => {
    record({ method: 'factory', config });
    return fakeAgent(record, options);
  },
  loggerFactory: (config, name) => createLogger({ file: config.logFile, level: config.logLevel, name }),
});
await stdout.flush();
process.exit(code);
