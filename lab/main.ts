// `vnetctl lab ...` in a source checkout: the lab's own entry. bin/vnetctl
// (the checkout's launcher) runs it when the first argument is `lab` and this
// file is built; the product's vnetctl (control/cli/vnetctl.ts) knows nothing
// of lab/, and the runtime image and node installs ship no lab/.
import { runLabCli } from './cli.js';

const argv = process.argv.slice(2);
runLabCli(argv[0] === 'lab' ? argv.slice(1) : argv).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`vnetctl lab: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
