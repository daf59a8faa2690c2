// TEST ONLY: `vnetctl daemon` with the crash and pause points of
// fault-hooks.ts: `node dist/test/support/faulty-daemon.js [daemon flags]`.
import { runDaemon } from '../../control/daemon/main.js';
import { faultHooksFromEnv } from './fault-hooks.js';

const faults = faultHooksFromEnv();
process.exit(await runDaemon(process.argv.slice(2), faults ? { faults } : {}));
