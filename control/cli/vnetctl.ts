// vnetctl: the operator's command. Subcommands load their module lazily so
// one command never pays for another's imports.
const usage = `usage: vnetctl <command> [args]

commands:
  lab up|down|status|exec   the simulated Azure VNet (see docs/lab.md)
  debug ...                 inspect the control plane and the dataplane
  daemon                    run the node daemon
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
