// Kernel facts through Debian's bpftool in JSON mode (`bpftool -j`). bpftool
// reads the kernel directly, so these views stay truthful even when the
// control plane's own handles or the native addon are what is broken.
import { run } from '../exec.js';
import { DataplaneError, DataplaneUnavailableError } from '../errors.js';

export interface TcAttachment {
  ifname: string;
  ifindex: number;
  /** 'ingress' | 'egress' (from bpftool's "clsact/ingress"), or bpftool's kind as is */
  direction: string;
  progId: number;
  progName: string;
}

export interface ProgInfo {
  id: number;
  name: string;
  tag: string;
  type: string;
  /** Present only while kernel.bpf_stats_enabled=1 (we never change that sysctl). */
  runCnt?: number;
  runTimeNs?: number;
}

/** One map entry in raw bytes. Per-CPU maps fill `values` (one buffer per CPU) instead of `value`. */
export interface RawMapEntry {
  key: Buffer;
  value?: Buffer;
  values?: Buffer[];
}

/** Runs `bpftool -j ARGS` and parses its JSON; a missing bpftool or a failure is a typed error. */
export async function bpftoolJson(args: readonly string[]): Promise<unknown> {
  let res;
  try {
    res = await run(['bpftool', '-j', ...args], { timeoutMs: 30_000 });
  } catch (err) {
    throw new DataplaneUnavailableError(`bpftool is not installed (apt-get install bpftool): ${(err as Error).message}`, { cause: err });
  }
  if (res.code !== 0) {
    const msg = parseBpftoolError(res.stdout) ?? (res.stderr.trim() || `exit ${res.code}`);
    throw new DataplaneError(`bpftool ${args.join(' ')}: ${msg}`);
  }
  try {
    return JSON.parse(res.stdout) as unknown;
  } catch (err) {
    throw new DataplaneError(`bpftool ${args.join(' ')} printed no JSON: ${res.stdout.slice(0, 200)}`, { cause: err });
  }
}

/** bpftool -j reports errors as {"error":"..."} on stdout. */
function parseBpftoolError(stdout: string): string | undefined {
  try {
    const o = JSON.parse(stdout) as { error?: unknown };
    return typeof o.error === 'string' ? o.error : undefined;
  } catch {
    return undefined;
  }
}

/** A scalar field of bpftool's JSON as text; '' when absent or not a scalar. */
function text(v: unknown): string {
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : '';
}

/** `bpftool net show` output: tc programs of every interface of the caller's netns. */
export function parseNetShow(json: unknown): TcAttachment[] {
  const out: TcAttachment[] = [];
  const blocks = Array.isArray(json) ? json : [json];
  for (const block of blocks) {
    const tc = (block as { tc?: unknown })?.tc;
    if (!Array.isArray(tc)) continue;
    for (const e of tc as Record<string, unknown>[]) {
      const kind = text(e.kind);
      out.push({
        ifname: text(e.devname),
        ifindex: Number(e.ifindex ?? 0),
        direction: kind.startsWith('clsact/') ? kind.slice('clsact/'.length) : kind,
        progId: Number(e.id ?? 0),
        // "from_pod:[1452]": bpftool appends the id to the name
        progName: text(e.name).replace(/:\[\d+\]$/, ''),
      });
    }
  }
  return out;
}

export function parseProgShow(json: unknown): ProgInfo {
  const p = json as Record<string, unknown>;
  const info: ProgInfo = { id: Number(p.id), name: text(p.name), tag: text(p.tag), type: text(p.type) };
  if (typeof p.run_cnt === 'number') info.runCnt = p.run_cnt;
  if (typeof p.run_time_ns === 'number') info.runTimeNs = p.run_time_ns;
  return info;
}

function hexBytes(x: unknown, what: string): Buffer {
  if (!Array.isArray(x)) throw new DataplaneError(`bpftool map dump: ${what} is not a byte list`);
  return Buffer.from(x.map((h) => parseInt(String(h), 16)));
}

/** `bpftool map dump` output: raw key/value bytes (BTF-formatted fields are ignored: layouts.ts decodes). */
export function parseMapDump(json: unknown): RawMapEntry[] {
  if (!Array.isArray(json)) throw new DataplaneError('bpftool map dump did not print a list');
  return json.map((e: Record<string, unknown>) => {
    const entry: RawMapEntry = { key: hexBytes(e.key, 'key') };
    if (Array.isArray(e.values)) entry.values = (e.values as { value: unknown }[]).map((v) => hexBytes(v.value, 'per-CPU value'));
    else entry.value = hexBytes(e.value, 'value');
    return entry;
  });
}

export async function tcAttachments(): Promise<TcAttachment[]> {
  return parseNetShow(await bpftoolJson(['net', 'show']));
}

export async function progInfo(id: number): Promise<ProgInfo> {
  return parseProgShow(await bpftoolJson(['prog', 'show', 'id', String(id)]));
}

export async function dumpPinnedMap(pinPath: string): Promise<RawMapEntry[]> {
  return parseMapDump(await bpftoolJson(['map', 'dump', 'pinned', pinPath]));
}
