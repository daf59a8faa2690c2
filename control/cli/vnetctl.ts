// vnetctl: the operator's command. Subcommands load their module lazily so
// one command never pays for another's imports.
const usage = `usage: vnetctl <command> [args]

commands:
  lab up|down|status|exec   the simulated Azure VNet (see docs/lab.md)
  debug ...                 inspect the control plane and the dataplane
  daemon                    run the node daemon
  status [--live]           CNI STATUS through the daemon with the installed conflist (exit 0: ready)
  version                   print the version
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'lab': {
      const { runLabCli } = await import('../../lab/cli.js');
      return runLabCli(rest);
    }
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
