// `debug all` (the default): every view, each one allowed to fail on its own
// so a missing bpftool or an empty node still leaves the rest readable.
import type { DebugContext } from '../context.js';
import { renderTable } from '../table.js';
import { collectCounters, renderCounters, type CounterRow } from './counters.js';
import { collectEndpoints, renderEndpoints, type EndpointsView } from './endpoints.js';
import { collectIptables, renderIptables, type IptablesView } from './iptables.js';
import { collectNat, renderNat, type NatView } from './nat.js';
import { collectPool, poolLine, renderPool, type PoolView } from './pool.js';
import { collectProgs, renderProgs, type ProgsView } from './progs.js';

type Part<T> = { ok: true; value: T } | { ok: false; error: string };

export interface SummaryView {
  source: DebugContext['snapshot']['source'];
  mode: string | undefined;
  node?: { nic: string; primaryIp: string; subnet: string; pinRoot: string };
  pool: PoolView;
  endpoints: Part<EndpointsView>;
  progs?: Part<ProgsView>;
  nat?: Part<NatView>;
  counters?: Part<CounterRow[]>;
  iptables?: Part<IptablesView>;
}

async function part<T>(fn: () => Promise<T>): Promise<Part<T>> {
  try {
    return { ok: true, value: await fn() };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}

export async function collectSummary(ctx: DebugContext): Promise<SummaryView> {
  const { state } = ctx.snapshot;
  const mode = state.node?.mode;
  const view: SummaryView = { source: ctx.snapshot.source, mode, pool: collectPool(state), endpoints: await part(() => collectEndpoints(ctx)) };
  if (state.node) view.node = { nic: state.node.network.nic, primaryIp: state.node.network.primaryIp, subnet: state.node.network.subnet, pinRoot: ctx.pinRoot };
  if (mode === 'ebpf' || ctx.pinned) {
    view.progs = await part(() => collectProgs(ctx));
    view.nat = await part(() => collectNat(ctx));
    view.counters = await part(() => collectCounters(ctx));
  }
  if (mode === 'iptables') view.iptables = await part(() => collectIptables(state.node?.network));
  return view;
}

export function sourceLine(source: SummaryView['source']): string {
  if (source.kind === 'daemon') return `control plane: daemon at ${source.socket}`;
  return `control plane: state file ${source.file}${source.daemonError ? ` (daemon not reachable: ${source.daemonError})` : ''}`;
}

function section<T>(title: string, p: Part<T> | undefined, render: (v: T) => string): string {
  if (!p) return '';
  return `\n== ${title} ==\n` + (p.ok ? render(p.value) : `unavailable: ${p.error}\n`);
}

export function renderSummary(v: SummaryView): string {
  const facts: [string, string][] = [
    ['source', sourceLine(v.source)],
    ['mode', v.mode ?? 'none (no pod has been added on this node)'],
  ];
  if (v.node) facts.push(['node', `${v.node.nic} ${v.node.primaryIp} in ${v.node.subnet}; pins ${v.node.pinRoot}`]);
  facts.push(['pool', poolLine(v.pool.summary)]);
  if (v.endpoints.ok) facts.push(['endpoints', `${v.endpoints.value.endpoints.length} (${v.endpoints.value.issueCount} issues)`]);
  if (v.progs?.ok) facts.push(['progs', `${v.progs.value.hooks.length} tc hooks (${v.progs.value.issues.length} issues)`]);
  if (v.nat?.ok) facts.push(['nat', `${v.nat.value.entries.length} SNAT flows`]);
  if (v.iptables?.ok) facts.push(['iptables', `${v.iptables.value.iptables.length + v.iptables.value.ebtables.length} rules of ours (${v.iptables.value.issues.length} issues)`]);
  if (v.counters?.ok) {
    const drops = v.counters.value.filter((c) => c.drop).reduce((n, c) => n + c.packets, 0n);
    facts.push(['drops', `${drops} packets`]);
  }
  let out = renderTable(['WHAT', 'STATE'], facts);
  out += section('endpoints', v.endpoints, renderEndpoints);
  out += `\n== pool ==\n${renderPool(v.pool)}`;
  out += section('progs', v.progs, renderProgs);
  out += section('nat', v.nat, renderNat);
  out += section('counters', v.counters, renderCounters);
  out += section('iptables', v.iptables, renderIptables);
  return out;
}
