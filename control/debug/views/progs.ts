// `debug progs`: which programs sit on which tc hook of which interface, from
// the kernel (bpftool net/prog), compared with the programs our pins hold.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { PROGRAMS } from '../../dataplane/ebpf/layouts.js';
import { bpftoolJson, parseProgShow, progInfo, tcAttachments, type ProgInfo, type TcAttachment } from '../bpftool.js';
import type { DebugContext } from '../context.js';
import { renderTable } from '../table.js';

export interface ProgRow extends TcAttachment {
  tag: string;
  /** our pinned program at this id (false: a foreign program, or a stale one of ours left by a reload) */
  ours: boolean;
  runCnt?: number;
  runTimeNs?: number;
}

export interface ProgsView {
  pinRoot: string;
  pinned: Record<string, number>;
  hooks: ProgRow[];
  /** expected hooks that are missing, programs of ours that are not the pinned ones */
  issues: string[];
}

async function pinnedProgramIds(pinRoot: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const name of Object.values(PROGRAMS)) {
    const pin = path.join(pinRoot, 'progs', name);
    if (existsSync(pin)) out[name] = parseProgShow(await bpftoolJson(['prog', 'show', 'pinned', pin])).id;
  }
  return out;
}

export async function collectProgs(ctx: DebugContext): Promise<ProgsView> {
  const pinned = ctx.pinned ? await pinnedProgramIds(ctx.pinRoot) : {};
  const pinnedIds = new Set(Object.values(pinned));
  const attachments = await tcAttachments();
  const infos = new Map<number, ProgInfo>();
  for (const id of new Set(attachments.map((a) => a.progId))) infos.set(id, await progInfo(id).catch(() => ({ id, name: '', tag: '', type: '' })));
  const hooks = attachments.map((a): ProgRow => {
    const info = infos.get(a.progId);
    const row: ProgRow = { ...a, tag: info?.tag ?? '', ours: pinnedIds.has(a.progId) };
    if (info?.runCnt !== undefined) row.runCnt = info.runCnt;
    if (info?.runTimeNs !== undefined) row.runTimeNs = info.runTimeNs;
    return row;
  });
  return { pinRoot: ctx.pinRoot, pinned, hooks, issues: progIssues(ctx, hooks) };
}

export function progIssues(ctx: Pick<DebugContext, 'snapshot'>, hooks: ProgRow[]): string[] {
  const issues: string[] = [];
  const ours = new Set<string>(Object.values(PROGRAMS));
  for (const h of hooks) if (ours.has(h.progName) && !h.ours) issues.push(`${h.ifname} ${h.direction}: ${h.progName} id ${h.progId} is not the pinned program (stale after a reload?)`);
  const { state } = ctx.snapshot;
  if (state.node?.mode !== 'ebpf') return issues;
  const has = (ifname: string, direction: string, prog: string): boolean => hooks.some((h) => h.ifname === ifname && h.direction === direction && h.progName === prog);
  const nic = state.node.network.nic;
  if (!has(nic, 'ingress', PROGRAMS.fromNic)) issues.push(`${nic} ingress: from_nic is not attached`);
  if (!has(nic, 'egress', PROGRAMS.toNic)) issues.push(`${nic} egress: to_nic is not attached`);
  for (const ep of Object.values(state.endpoints)) {
    if (ep.mode === 'ebpf' && ep.phase === 'ready' && !has(ep.hostVeth, 'ingress', PROGRAMS.fromPod)) issues.push(`${ep.hostVeth} ingress: from_pod is not attached (pod ${ep.ip})`);
  }
  return issues;
}

export function renderProgs(v: ProgsView): string {
  const stats = v.hooks.some((h) => h.runCnt !== undefined);
  const headers = ['IFNAME', 'IFINDEX', 'DIRECTION', 'PROG ID', 'NAME', 'TAG', 'OURS'];
  if (stats) headers.push('RUN COUNT', 'RUN TIME NS', 'NS/RUN');
  const rows = v.hooks.map((h) => {
    const r: (string | number | undefined)[] = [h.ifname, h.ifindex, h.direction, h.progId, h.progName, h.tag, h.ours ? 'yes' : 'NO'];
    if (stats) r.push(h.runCnt, h.runTimeNs, h.runCnt ? Math.round((h.runTimeNs ?? 0) / h.runCnt) : undefined);
    return r;
  });
  let out = `tc programs (pins: ${v.pinRoot})\n` + renderTable(headers, rows);
  if (!stats) out += 'run counts: not reported (kernel.bpf_stats_enabled is 0)\n';
  return out + renderIssues(v.issues);
}

export function renderIssues(issues: readonly string[]): string {
  if (issues.length === 0) return 'issues: none\n';
  return `issues (${issues.length}):\n` + issues.map((i) => `  ! ${i}\n`).join('');
}
