// A process that owns one lab until it is told to stop (SIGTERM/SIGINT),
// then tears it down. `vnetctl lab up` starts it detached; tests start it
// and kill -9 it to exercise the sweeper.
//   node dist/lab/keeper.js [--vms N] [--pods N] [--prefix P] [--spec FILE] [--kind keeper|process]
// Prints "READY <prefix>" on stdout once the lab is up.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Lab } from './lab.js';
import { defaultSpec, type LabSpec } from './spec.js';
import { LabSpecError } from './errors.js';

export interface LabArgs {
  vms: number;
  pods: number;
  prefix?: string;
  specFile?: string;
}

export const LAB_ARG_OPTIONS = {
  vms: { type: 'string' },
  pods: { type: 'string' },
  prefix: { type: 'string' },
  spec: { type: 'string' },
} as const;

export function labArgs(values: { vms?: string; pods?: string; prefix?: string; spec?: string }): LabArgs {
  const count = (text: string | undefined, fallback: number, what: string): number => {
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!Number.isInteger(n) || n < 0) throw new LabSpecError(`--${what}: expected a whole number, got '${text}'`);
    return n;
  };
  const args: LabArgs = { vms: count(values.vms, 2, 'vms'), pods: count(values.pods, 4, 'pods') };
  if (values.prefix !== undefined) args.prefix = values.prefix;
  if (values.spec !== undefined) args.specFile = values.spec;
  return args;
}

export function specFromArgs(args: LabArgs): LabSpec {
  if (args.specFile === undefined) return defaultSpec(args.vms, args.pods);
  try {
    return JSON.parse(readFileSync(args.specFile, 'utf8')) as LabSpec;
  } catch (err) {
    throw new LabSpecError(`--spec ${args.specFile}: ${(err as Error).message}`, { cause: err });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { ...LAB_ARG_OPTIONS, kind: { type: 'string', default: 'keeper' } } });
  const args = labArgs(values);
  const lab = await Lab.up(specFromArgs(args), {
    ...(args.prefix ? { prefix: args.prefix } : {}),
    ownerKind: values.kind === 'process' ? 'process' : 'keeper',
    log: (line) => process.stderr.write(`keeper: ${line}\n`),
  });
  process.stdout.write(`READY ${lab.prefix}\n`);
  // Lab.up installed the SIGINT/SIGTERM handlers that tear down and exit; stay alive until then.
  setInterval(() => {}, 1 << 30);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`keeper: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
