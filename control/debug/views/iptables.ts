// `debug iptables`: the plugin's own chains (VNET-*) and the jumps into them,
// from iptables-save -c of the host's backend, and the ebtables nat chains
// with packet counts. Parsers are pure and unit-tested against real output.
import { run } from '../../exec.js';
import { DataplaneError } from '../../errors.js';
import { detectIptablesBackend } from '../../dataplane/iptables/backend.js';
import { EB_POST_CHAIN, EB_PRE_CHAIN, ebtablesNodeRules, jumpRules, renderIptablesRestore } from '../../dataplane/iptables/rules.js';
import type { NodeNetwork } from '../../dataplane/types.js';
import { renderTable } from '../table.js';

export interface RuleRow {
  table: string;
  chain: string;
  packets: number;
  bytes: number;
  rule: string;
}

export interface IptablesView {
  backend: string;
  iptables: RuleRow[];
  ebtables: RuleRow[];
  /** node-wide rules the dataplane installs (for the node the store records) that the kernel does not have */
  issues: string[];
}

const OURS = /^VNET-/;

/** `iptables-save -c` lines of our chains plus the rules that jump into them. */
export function parseIptablesSave(text: string): RuleRow[] {
  const out: RuleRow[] = [];
  let table = '';
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) table = line.slice(1).trim();
    const m = /^\[(\d+):(\d+)\] -A (\S+) (.*)$/.exec(line);
    if (!m) continue;
    const [, pk, by, chain, rule] = m;
    if (!OURS.test(chain!) && !/-j VNET-/.test(rule!)) continue;
    out.push({ table, chain: chain!, packets: Number(pk), bytes: Number(by), rule: rule! });
  }
  return out;
}

/** `ebtables -t nat -L --Lc`: our chains and the jumps into them. */
export function parseEbtablesList(text: string): RuleRow[] {
  const out: RuleRow[] = [];
  let chain = '';
  for (const line of text.split('\n')) {
    const c = /^Bridge chain: ([^,]+),/.exec(line);
    if (c) {
      chain = c[1]!;
      continue;
    }
    const m = /^(.*) , pcnt = (\d+) -- bcnt = (\d+)$/.exec(line);
    if (!m) continue;
    const rule = m[1]!.trim();
    if (!OURS.test(chain) && !/-j VNET-/.test(rule)) continue;
    out.push({ table: 'nat', chain, packets: Number(m[2]), bytes: Number(m[3]), rule });
  }
  return out;
}

/** Pod IP -> MAC of the per-endpoint DNAT rules in VNET-PRE. */
export function dnatTargets(rows: readonly RuleRow[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const r of rows) {
    const m = /--ip-dst (\S+) -j dnat --to-dst (\S+)/.exec(r.rule);
    if (r.chain === EB_PRE_CHAIN && m) out.set(m[1]!, m[2]!);
  }
  return out;
}

/** An argv tail as iptables-save / ebtables -L print it (arguments with spaces in double quotes). */
const asSaved = (spec: readonly string[]): string => spec.map((a) => (/\s/.test(a) ? `"${a}"` : a)).join(' ');

/** Node-wide rules the iptables dataplane installs for `node` (rules.ts), missing from what the kernel has. */
export function missingNodeRules(node: NodeNetwork, iptables: readonly RuleRow[], ebtables: readonly RuleRow[]): string[] {
  const want: { table: string; chain: string; rule: string; tool: string }[] = [];
  let table = '';
  for (const line of renderIptablesRestore(node).split('\n')) {
    if (line.startsWith('*')) table = line.slice(1);
    const m = /^-A (\S+) (.*)$/.exec(line);
    if (m) want.push({ table, chain: m[1]!, rule: m[2]!, tool: 'iptables' });
  }
  for (const j of jumpRules()) want.push({ table: j.table, chain: j.chain, rule: asSaved(j.spec), tool: 'iptables' });
  for (const r of ebtablesNodeRules(node)) want.push({ table: 'nat', chain: r.chain, rule: asSaved(r.spec), tool: 'ebtables' });
  const have = new Set([...iptables.map((r) => `iptables ${r.table} ${r.chain} ${r.rule}`), ...ebtables.map((r) => `ebtables ${r.table} ${r.chain} ${r.rule}`)].map((k) => k.toLowerCase()));
  return want
    .filter((w) => !have.has(`${w.tool} ${w.table} ${w.chain} ${w.rule}`.toLowerCase()))
    .map((w) => `${w.tool} ${w.table} ${w.chain}: missing ${w.rule}`);
}

async function ebtablesRows(): Promise<RuleRow[]> {
  const res = await run(['ebtables', '--concurrent', '-t', 'nat', '-L', '--Lc'], { timeoutMs: 30_000 });
  if (res.code !== 0) throw new DataplaneError(`ebtables -t nat -L --Lc: ${res.stderr.trim() || `exit ${res.code}`}`);
  return parseEbtablesList(res.stdout).filter((r) => r.chain === EB_PRE_CHAIN || r.chain === EB_POST_CHAIN || /-j VNET-/.test(r.rule));
}

export async function ebtablesDnatTargets(): Promise<Map<string, string>> {
  return dnatTargets(await ebtablesRows());
}

/** `node`: the node the store records in iptables mode; its node-wide rules are then checked. */
export async function collectIptables(node?: NodeNetwork): Promise<IptablesView> {
  const tools = await detectIptablesBackend();
  const res = await run([tools.save, '-c'], { timeoutMs: 30_000 });
  if (res.code !== 0) throw new DataplaneError(`${tools.save} -c: ${res.stderr.trim() || `exit ${res.code}`}`);
  const iptables = parseIptablesSave(res.stdout);
  const ebtables = await ebtablesRows();
  return { backend: tools.backend, iptables, ebtables, issues: node ? missingNodeRules(node, iptables, ebtables) : [] };
}

export function renderIptables(v: IptablesView): string {
  const rows = (rs: RuleRow[]): (string | number)[][] => rs.map((r) => [r.table, r.chain, r.packets, r.bytes, r.rule]);
  const headers = ['TABLE', 'CHAIN', 'PACKETS', 'BYTES', 'RULE'];
  const issues = v.issues.length ? `issues (${v.issues.length}):\n${v.issues.map((i) => `  ! ${i}\n`).join('')}` : 'issues: none\n';
  return `iptables (${v.backend})\n` + renderTable(headers, rows(v.iptables)) + '\nebtables\n' + renderTable(headers, rows(v.ebtables)) + issues;
}
