// Thin wrappers over iproute2. Every call is one process; callers batch
// related changes with ipBatch so a pod costs a handful of spawns. A netns is
// given by path (CNI_NETNS is a path), so we enter it with nsenter rather than
// `ip -n`, which only knows names under /run/netns.
import { run, ExecError } from '../exec.js';
import { DataplaneError } from '../errors.js';

export interface LinkInfo {
  ifindex: number;
  ifname: string;
  address: string;
  mtu: number;
  operstate: string;
  flags: string[];
  master?: string;
  link_netnsid?: number;
  linkinfo?: { info_kind?: string };
}

export interface AddrInfo {
  family: string;
  local: string;
  prefixlen: number;
  broadcast?: string;
  scope?: string;
}

export interface RouteInfo {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  scope?: string;
  prefsrc?: string;
  metric?: number;
  flags?: string[];
}

function argvFor(args: readonly string[], netns?: string): string[] {
  return netns ? ['nsenter', `--net=${netns}`, '--', 'ip', ...args] : ['ip', ...args];
}

/** Run one ip command; throws DataplaneError with ip's own message on failure. */
export async function ip(args: readonly string[], netns?: string): Promise<string> {
  const argv = argvFor(args, netns);
  const res = await run(argv, { timeoutMs: 30_000 });
  if (res.code !== 0) throw new DataplaneError(`ip ${args.join(' ')}: ${res.stderr.trim() || `exit ${res.code}`}`, { cause: new ExecError(argv, res) });
  return res.stdout;
}

/** Run several ip commands in one process; stops at the first failing line. */
export async function ipBatch(lines: readonly string[], netns?: string): Promise<void> {
  if (lines.length === 0) return;
  const argv = argvFor(['-batch', '-'], netns);
  const res = await run(argv, { input: lines.join('\n') + '\n', timeoutMs: 30_000 });
  if (res.code !== 0) throw new DataplaneError(`ip -batch failed: ${res.stderr.trim() || `exit ${res.code}`}`, { cause: new ExecError(argv, res), details: lines.join('; ') });
}

export async function ipJson<T>(args: readonly string[], netns?: string): Promise<T> {
  const out = await ip(['-j', ...args], netns);
  if (out.trim() === '') return [] as unknown as T;
  return JSON.parse(out) as T;
}

/** The link, or undefined if it does not exist. */
export async function linkInfo(name: string, netns?: string): Promise<LinkInfo | undefined> {
  const res = await run(argvFor(['-j', '-d', 'link', 'show', 'dev', name], netns), { timeoutMs: 30_000 });
  if (res.code !== 0) {
    if (/does not exist|Cannot find device/i.test(res.stderr)) return undefined;
    throw new DataplaneError(`ip link show ${name}: ${res.stderr.trim()}`);
  }
  const links = JSON.parse(res.stdout) as LinkInfo[];
  return links[0];
}

export async function ipv4Addrs(dev: string, netns?: string): Promise<AddrInfo[]> {
  const data = await ipJson<{ addr_info?: AddrInfo[] }[]>(['-4', 'addr', 'show', 'dev', dev], netns);
  return (data[0]?.addr_info ?? []).filter((a) => a.family === 'inet');
}

export async function ipv4Routes(selector: readonly string[], netns?: string): Promise<RouteInfo[]> {
  return ipJson<RouteInfo[]>(['-4', 'route', 'show', ...selector], netns);
}

/** Write a sysctl under /proc/sys of the current network namespace. */
export async function setSysctl(key: string, value: string): Promise<void> {
  const { writeFile } = await import('node:fs/promises');
  await writeFile(`/proc/sys/${key.replaceAll('.', '/')}`, value);
}
