// `azure-vnet debug ...`: the plugin binary doubles as the debug tool on nodes
// that ship only the CNI binaries. A runtime never passes arguments to a CNI
// plugin, so argv[2] === 'debug' cannot collide with a CNI call.
export async function debugIfAsked(argv: readonly string[]): Promise<void> {
  if (argv[2] !== 'debug') return;
  const { runDebugCli } = await import('./cli.js');
  let code: number;
  try {
    code = await runDebugCli(argv.slice(3));
  } catch (err) {
    process.stderr.write(`azure-vnet debug: ${(err as Error).message}\n`);
    code = 1;
  }
  process.exit(code);
}
