// vnetctl: the operator's command. Subcommands load their module lazily so
// one command never pays for another's imports. `vnetctl lab` is not here: the
// lab is not part of the product; a source checkout's bin/vnetctl runs the
// lab's own entry (lab/main.ts) for it.
const usage = `usage: vnetctl <command> [args]

commands:
  debug ...                 inspect the control plane and the dataplane
  daemon                    run the node daemon
  status [--live]           CNI STATUS through the daemon with the installed conflist (exit 0: ready)
  version                   print the version
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'lab':
      process.stderr.write("vnetctl: 'lab' is the simulated VNet of a source checkout (bin/vnetctl lab ...; docs/lab.md); this install has no lab\n");
      return 2;
    case 'debug': {
      const { runDebugCli } = await import('../debug/cli.js');
      return runDebugCli(rest);
    }
    case 'daemon': {
      const { runDaemon } = await import('../daemon/main.js');
      return runDaemon(rest);
    }
    case 'status': {
      const { runStatusCli } = await import('./status.js');
      return runStatusCli(rest);
    }
    case 'version':
    case '--version': {
      const { readFileSync } = await import('node:fs');
      // dist/control/cli/vnetctl.js -> <install root>/package.json
      const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
      process.stdout.write(`vnet-cni v${pkg.version}\n`);
      return 0;
    }
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(usage);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`vnetctl: unknown command '${command}'\n${usage}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`vnetctl: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
