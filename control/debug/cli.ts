// `vnetctl debug <view> [--json] [--state-dir D] [--bpf-root R] [--socket P]`:
// read-only views over the kernel (bpftool, iptables-save, ebtables, ip) and
// the control plane (the daemon's DUMP or the state file). Nothing here
// changes the node.
import { parseArgs } from 'node:util';
import { InvalidConfigError } from '../errors.js';
import { buildContext, type DebugContext, type DebugOptions } from './context.js';
import { toJson } from './table.js';
import { collectCounters, renderCounters } from './views/counters.js';
import { collectEndpoints, renderEndpoints } from './views/endpoints.js';
import { collectIptables, renderIptables } from './views/iptables.js';
import { collectNat, renderNat } from './views/nat.js';
import { collectPool, renderPool } from './views/pool.js';
import { collectKubernetes, renderKubernetes } from './views/kubernetes.js';
import { collectPolicyWithKernel, renderPolicy } from './views/policy.js';
import { collectProgs, renderProgs } from './views/progs.js';
import { collectSummary, renderSummary, sourceLine } from './views/summary.js';

/** Must match control/daemon/main.ts DEFAULT_SOCKET (not imported: that module pulls in the whole agent). */
export const DEFAULT_DAEMON_SOCKET = '/run/vnet-cni/daemon.sock';
export const DEFAULT_STATE_DIR = '/var/lib/vnet-cni';

interface View {
  /** `arg`: the view's optional argument (debug policy [pod]). */
  collect(ctx: DebugContext, arg?: string): Promise<unknown>;
  render(data: never): string;
  /** false: the view's data does not come from the control plane, so no source line */
  fromStore: boolean;
}

const VIEWS: Record<string, View> = {
  progs: { collect: collectProgs, render: renderProgs, fromStore: false },
  endpoints: { collect: collectEndpoints, render: renderEndpoints, fromStore: true },
  nat: { collect: collectNat, render: renderNat, fromStore: false },
  counters: { collect: collectCounters, render: renderCounters, fromStore: false },
  iptables: { collect: (ctx) => collectIptables(ctx.snapshot.state.node?.mode === 'iptables' ? ctx.snapshot.state.node.network : undefined), render: renderIptables, fromStore: false },
  pool: { collect: (ctx) => Promise.resolve(collectPool(ctx.snapshot.state)), render: renderPool, fromStore: true },
  kubernetes: { collect: (ctx) => Promise.resolve(collectKubernetes(ctx.snapshot.state, ctx.snapshot.source.kind === 'daemon')), render: renderKubernetes, fromStore: true },
  policy: { collect: collectPolicyWithKernel, render: renderPolicy, fromStore: true },
  all: { collect: collectSummary, render: renderSummary, fromStore: false },
};

/** Views that take one argument after their name. */
const VIEWS_WITH_ARG = new Set(['policy']);

export const DEBUG_USAGE = `usage: vnetctl debug [progs|endpoints|nat|counters|iptables|pool|kubernetes|policy [POD]|all] [--json]
                     [--state-dir D] [--socket P] [--bpf-root R] [--node NAME]

  progs      tc programs per interface and hook (bpftool)
  endpoints  the endpoint map beside the control plane's endpoints, differences flagged
  nat        the SNAT table (pod ip:port <-> primary ip:port, remote, idle time)
  counters   dataplane packet counters by reason, summed over CPUs
  iptables   the plugin's iptables chains and ebtables rules with packet counts
  pool       IPAM pool summary and allocations
  kubernetes the daemon's API watches, status writes and node condition (daemon only)
  policy     NetworkPolicy: the engine's state and problems; per endpoint (or POD, as
             namespace/name or address) the policies selecting it and its compiled rules,
             and every difference between those and what the kernel holds (maps or
             chains and ipsets); without a daemon, the kernel's own consistency
  all        a summary of everything (the default)

  --state-dir D  node state dir (default ${DEFAULT_STATE_DIR})
  --socket P     daemon socket, asked first (default ${DEFAULT_DAEMON_SOCKET})
  --bpf-root R   the conflist's bpfRoot (pins at R/<node>) or a pin dir (default: from the state)
`;

export interface DebugRun {
  view: string;
  options: DebugOptions;
  json: boolean;
  /** The view's argument (debug policy POD). */
  arg?: string;
}

export function parseDebugArgs(argv: string[]): DebugRun | 'help' {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      json: { type: 'boolean', default: false },
      'state-dir': { type: 'string', default: DEFAULT_STATE_DIR },
      socket: { type: 'string', default: DEFAULT_DAEMON_SOCKET },
      'bpf-root': { type: 'string' },
      node: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return 'help';
  const view = positionals[0] ?? 'all';
  if (positionals.length > (VIEWS_WITH_ARG.has(view) ? 2 : 1)) throw new InvalidConfigError(`vnetctl debug takes one view${VIEWS_WITH_ARG.has(view) ? ' and one argument' : ''}; got ${positionals.join(' ')}`);
  if (!(view in VIEWS)) throw new InvalidConfigError(`unknown view '${view}'; one of ${Object.keys(VIEWS).join(', ')}`);
  const options: DebugOptions = { stateDir: values['state-dir'], socket: values.socket };
  if (values['bpf-root']) options.bpfRoot = values['bpf-root'];
  if (values.node) options.node = values.node;
  return { view, options, json: values.json, ...(positionals[1] !== undefined ? { arg: positionals[1] } : {}) };
}

/** Runs one view and returns the text to print (JSON or tables). */
export async function debugOutput(r: DebugRun): Promise<string> {
  const ctx = await buildContext(r.options);
  const view = VIEWS[r.view]!;
  const data = await view.collect(ctx, r.arg);
  if (r.json) return toJson(data);
  const head = view.fromStore ? `${sourceLine(ctx.snapshot.source)}\n` : '';
  return head + view.render(data as never);
}

export async function runDebugCli(argv: string[]): Promise<number> {
  let r: DebugRun | 'help';
  try {
    r = parseDebugArgs(argv);
  } catch (err) {
    process.stderr.write(`vnetctl debug: ${(err as Error).message}\n${DEBUG_USAGE}`);
    return 2;
  }
  if (r === 'help') {
    process.stdout.write(DEBUG_USAGE);
    return 0;
  }
  const out = await debugOutput(r);
  await new Promise<void>((resolve) => process.stdout.write(out, () => resolve()));
  return 0;
}
