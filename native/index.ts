// Typed entry to the native addon (native/src). Loaded lazily so CNI calls
// that never touch BPF or locks do not pay for dlopen.
//
// Error mode: synchronous methods throw, async ones reject. Kernel/libbpf
// failures are `NativeError`s: `code` ('EPERM', 'ENOENT', ...), `errno`, `op`
// (the failing call); object loads add `libbpfLog` and, when the verifier
// rejected a program, `verifierLog`.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export interface NativeError extends Error {
  code: string;
  errno: number;
  op: string;
  libbpfLog?: string;
  verifierLog?: string;
}

export interface LoadObjectOptions {
  /** Reuse compatible maps pinned at <dir>/<map name>; pin newly created ones there. The dir must exist. */
  pinMapsDir?: string;
  /** Initial contents of internal maps (e.g. '.rodata' for `const volatile` load-time config); exact size. */
  initialValues?: Record<string, Buffer>;
}

export interface BpfStructLayout {
  size: number;
  members: Array<{ name: string; offset: number; size: number }>;
}

/** A loaded object. program()/map() return independent handles (dup'ed fds) that outlive close(). */
export interface BpfObject {
  readonly path: string;
  programs(): string[];
  /** Non-internal maps (no .rodata/.bss). */
  maps(): string[];
  program(name: string): BpfProgram;
  map(name: string): BpfMap;
  /** Layout of a struct as recorded in the object's BTF, or null if absent. */
  btfStruct(name: string): BpfStructLayout | null;
  /** Idempotent. */
  close(): void;
}

export interface BpfProgramInfo {
  id: number;
  type: number;
  tag: string;
  name: string;
}

export interface TestRunOptions {
  data: Buffer;
  repeat?: number;
  /** Output buffer size (default data.length + 256). */
  dataOutSize?: number;
  /** Fields of struct __sk_buff the kernel lets a test set. ifindex must exist in the netns. */
  ctx?: { ingressIfindex?: number; ifindex?: number; mark?: number; priority?: number };
  /** Run inside this netns (path, e.g. /var/run/netns/x): FIB and conntrack lookups resolve there. */
  netns?: string;
}

export interface TestRunResult {
  retval: number;
  /** Average ns per repetition. */
  duration: number;
  data: Buffer;
  ctx?: { mark: number; priority: number; ifindex: number };
}

export interface BpfProgram {
  readonly fd: number;
  readonly name: string;
  info(): BpfProgramInfo;
  /** bpf_obj_pin; the directory must exist on a bpffs. Unpin = fs.unlinkSync(path). */
  pin(path: string): void;
  testRun(options: TestRunOptions): Promise<TestRunResult>;
  /** Idempotent. */
  close(): void;
}

export interface BpfMapInfo {
  name: string;
  id: number;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  /** Values are one 8-byte-aligned slot per possible CPU. */
  perCpu: boolean;
}

export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;

export interface BpfMap {
  readonly fd: number;
  readonly name: string;
  info(): BpfMapInfo;
  /** null if the key is absent. */
  lookup(key: Buffer): Buffer | null;
  update(key: Buffer, value: Buffer, flags?: number): void;
  /** false if the key was absent. */
  delete(key: Buffer): boolean;
  /** Walk the map off the JS thread. */
  entries(): Promise<Array<[Buffer, Buffer]>>;
  /** Delete many keys off the JS thread; resolves with how many existed. */
  deleteBatch(keys: Buffer[]): Promise<number>;
  pin(path: string): void;
  /** Idempotent. */
  close(): void;
}

export interface TcTarget {
  ifindex?: number;
  ifname?: string;
  direction: 'ingress' | 'egress';
  /** Filter handle and priority: both required to attach, detach or query. */
  handle: number;
  priority: number;
  /** Path of the netns the interface lives in (default: the caller's). */
  netns?: string;
}

/**
 * One rtnetlink request (native/src/netlink.cc). `dev`/`master` are link names
 * in the batch's netns; `netns` fields are netns paths. IPv4 only.
 */
export type NetlinkOp =
  | { op: 'linkGet'; dev: string }
  | { op: 'linkList' }
  | {
      op: 'linkAdd';
      kind: 'veth' | 'bridge';
      name: string;
      mtu?: number;
      mac?: string;
      up?: boolean;
      /** veth only: the peer, created directly in `netns` (IFLA_NET_NS_FD) when given. */
      peer?: { name: string; mtu?: number; mac?: string; netns?: string };
    }
  | { op: 'linkSet'; dev: string; up?: boolean; mtu?: number; mac?: string; name?: string; master?: string; netns?: string }
  | { op: 'linkDel'; dev: string; missingOk?: boolean }
  | {
      op: 'addrAdd';
      dev: string;
      address: string;
      prefixLength: number;
      broadcast?: string;
      replace?: boolean;
      /** IFA_F_NOPREFIXROUTE: the kernel adds no route for the address's prefix. */
      noPrefixRoute?: boolean;
    }
  | { op: 'addrDel'; dev: string; address: string; prefixLength: number; missingOk?: boolean }
  | { op: 'addrList'; dev?: string }
  | {
      op: 'routeAdd' | 'routeDel';
      /** Destination: `default: true`, or address + dstLen. */
      default?: boolean;
      address?: string;
      dstLen?: number;
      gateway?: string;
      dev?: string;
      onlink?: boolean;
      /** RT_SCOPE_* number; default as iproute2 (link without gateway, else global). */
      scope?: number;
      /** RTPROT_* number; default boot (as iproute2). */
      protocol?: number;
      prefsrc?: string;
      metric?: number;
      replace?: boolean;
      missingOk?: boolean;
    }
  | { op: 'routeList'; dev?: string; default?: boolean }
  /** key: path under /proc/sys ('net/ipv4/ip_forward'), written with the thread in the batch's netns. */
  | { op: 'sysctl'; key: string; value: string }
  /** One gratuitous ARP request announcing `address` at `mac` out of `dev` (in the batch's netns). */
  | { op: 'garp'; dev: string; address: string; mac: string }
  /** A permanent neighbour entry (created or replaced). */
  | { op: 'neighAdd'; dev: string; address: string; mac: string }
  /** The IPv4 neighbour entries of `dev`: { dst, lladdr?, permanent }. */
  | { op: 'neighList'; dev: string };

export interface NativeAddon {
  /**
   * Runs ops in order over one NETLINK_ROUTE socket opened in `netns` (path;
   * default the caller's). Resolves with one result per op (undefined for
   * changes, boolean for deletes, link/null, arrays for lists); rejects at the
   * first failing op with a NativeError that also has `index`.
   */
  netlink(ops: NetlinkOp[], netns?: string): Promise<unknown[]>;

  flock(fd: number, exclusive: boolean, timeoutMs: number): Promise<void>;
  funlock(fd: number): void;
  /** malloc_trim(0): return glibc's free pages to the OS; true if any were. */
  trimMemory(): boolean;
  /** Blocking flock on a dup of fd; bound the wait by closing fd (the lock then dies with the dup). */
  flockWait(fd: number, exclusive: boolean): Promise<void>;

  loadObject(path: string, options?: LoadObjectOptions): Promise<BpfObject>;
  openPinnedMap(path: string): BpfMap;
  openPinnedProgram(path: string): BpfProgram;
  numPossibleCpus(): number;
  libbpfVersion(): string;

  /** Creates the clsact qdisc if missing (createdHook tells), then attaches (direct-action). */
  tcAttach(
    program: BpfProgram,
    target: TcTarget & { replace?: boolean },
  ): Promise<{ ifindex: number; createdHook: boolean; progId: number }>;
  /** false if nothing was attached at that handle/priority. */
  tcDetach(target: TcTarget): Promise<boolean>;
  tcQuery(target: TcTarget): Promise<{ ifindex: number; progId: number } | null>;
  /** Removes the clsact qdisc (all its filters). Only for a qdisc you created. */
  tcDestroyHook(target: Omit<TcTarget, 'direction' | 'handle' | 'priority'> & { direction: 'both' }): Promise<boolean>;
  listLinks(netns?: string): Promise<Array<{ name: string; index: number }>>;

  /** Sizes and member offsets of bpf/include/vnet_maps.h as the addon's compiler laid them out. */
  layouts(): Record<string, { size: number; offsets: Record<string, number> }>;
  /** Counter labels in vnet_reason order (bpf/include/vnet_maps.h VNET_REASONS). */
  reasons(): string[];
}

let cached: NativeAddon | undefined;

/** Path of the built addon, relative to the repository (dist/native/index.js -> native/build). */
export function addonPath(): string {
  return process.env.VNET_NATIVE_ADDON ?? path.join(repoRoot(), 'native', 'build', 'Release', 'vnet_native.node');
}

/** Repository root (native/build, bpf/*.o), from both native/ (ts sources) and dist/native/ (compiled). */
export function repoRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return here.includes(`${path.sep}dist${path.sep}`) ? path.resolve(here, '..', '..') : path.resolve(here, '..');
}

export function native(): NativeAddon {
  if (!cached) {
    const require = createRequire(import.meta.url);
    cached = require(addonPath()) as NativeAddon;
  }
  return cached;
}

/** True if err came from the addon with this errno name. */
export function isNativeError(err: unknown, code?: string): err is NativeError {
  return err instanceof Error && typeof (err as NativeError).errno === 'number' && (code === undefined || (err as NativeError).code === code);
}
