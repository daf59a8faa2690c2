// The node's address allocator: pure functions over a JSON-serialisable state
// that the Agent keeps in its durable store. allocate/release/lookup touch a
// constant number of entries (hash lookups and queue ends); only a pool refresh
// walks the whole pool.
//
// Hand-out order: addresses never handed out since they entered the pool go
// first, lowest first; then released addresses, least recently released first,
// so a just-freed address (whose old pod may still sit in peers' ARP and
// conntrack tables) is reused as late as possible.
import { InvalidConfigError, InvalidEnvError, PoolExhaustedError, PoolSourceError, StoreError } from '../errors.js';
import {
  emptyQueue,
  queueLength,
  queuePush,
  queueReplace,
  queueShift,
  queueValues,
  type AddressQueue,
} from './address-queue.js';
import { cidrContains, compareIPv4, normaliseMac, parseCidr, parseIPv4 } from './ipv4.js';
import {
  ANY_MAC,
  type AllocateOptions,
  type Allocation,
  type NicPool,
  type Owner,
  type PoolChange,
  type PoolSummary,
} from './types.js';

/** What the last applied pool said about the NIC (everything but its addresses). */
export interface NicFacts {
  mac: string;
  primaryIp: string;
  subnet: string;
  prefixLength: number;
  gateway: string;
}

/** One held address. The owner is the key it is stored under. */
export interface Holding {
  ip: string;
  podName?: string;
  podNamespace?: string;
  /** present (true) once the address has left the pool while held */
  orphaned?: true;
}

export interface IpamState {
  version: 1;
  /** null until the first pool is applied */
  nic: NicFacts | null;
  /** free, never handed out since entering the pool; ascending */
  unused: AddressQueue;
  /** free, released by an owner; least recently released first */
  released: AddressQueue;
  /** held addresses by owner key `${containerId}/${ifName}` */
  holdings: Record<string, Holding>;
  /** number of holdings, orphans included (kept so allocate needs no count) */
  used: number;
  /** number of holdings flagged orphaned */
  orphaned: number;
}

export { ANY_MAC };

export function emptyIpamState(): IpamState {
  return { version: 1, nic: null, unused: emptyQueue(), released: emptyQueue(), holdings: {}, used: 0, orphaned: 0 };
}

/** The key an owner's holding is stored under; the same format as the store's endpoint keys. */
export function ownerKey(owner: Owner): string {
  const { containerId, ifName } = owner;
  if (typeof containerId !== 'string' || containerId === '') throw new InvalidEnvError('IPAM: container ID is empty');
  // Interface names cannot contain '/', so the last '/' always splits the key back.
  if (typeof ifName !== 'string' || ifName === '' || ifName.includes('/')) {
    throw new InvalidEnvError(`IPAM: interface name ${JSON.stringify(ifName)} is empty or contains "/"`);
  }
  return `${containerId}/${ifName}`;
}

function ownerFromKey(key: string): Owner {
  const slash = key.lastIndexOf('/');
  return { containerId: key.slice(0, slash), ifName: key.slice(slash + 1) };
}

function holdingOf(state: IpamState, key: string): Holding | undefined {
  return Object.hasOwn(state.holdings, key) ? state.holdings[key] : undefined;
}

function freeCount(state: IpamState): number {
  return queueLength(state.unused) + queueLength(state.released);
}

function poolSize(state: IpamState): number {
  return freeCount(state) + state.used - state.orphaned;
}

/**
 * Make `pool` the NIC's pool. New addresses become allocatable, free addresses
 * that vanished leave, and held addresses that vanished stay with their owner
 * flagged orphaned: reported, never handed out again unless they come back.
 */
export function applyPool(state: IpamState, pool: NicPool): PoolChange {
  const facts = checkedFacts(pool);
  const cidr = parseCidr(facts.subnet)!;
  const next = new Map<string, number>(); // ip -> numeric value, parsed once for sorting
  for (const ip of pool.addresses) {
    const value = parseIPv4(ip);
    if (value === undefined || !cidrContains(cidr, value)) {
      throw new PoolSourceError(`pool for ${facts.subnet}: ${JSON.stringify(ip)} is not an IPv4 address inside the subnet`);
    }
    next.set(ip, value);
  }
  const ascending = (ips: string[]): string[] => ips.sort((a, b) => (next.get(a) ?? parseIPv4(a)!) - (next.get(b) ?? parseIPv4(b)!));

  const unused = queueValues(state.unused);
  const released = queueValues(state.released);
  const before = new Set<string>([...unused, ...released]);
  const held = new Set<string>();
  const orphaned: PoolChange['orphaned'] = [];
  for (const [key, holding] of Object.entries(state.holdings)) {
    held.add(holding.ip);
    if (!holding.orphaned) before.add(holding.ip);
    const inPool = next.has(holding.ip);
    if (holding.orphaned && inPool) {
      delete holding.orphaned;
      state.orphaned--;
    } else if (!holding.orphaned && !inPool) {
      holding.orphaned = true;
      state.orphaned++;
      orphaned.push({ ip: holding.ip, owner: ownerFromKey(key) });
    }
  }

  const added = [...next.keys()].filter((ip) => !before.has(ip));
  const removed = [...unused, ...released].filter((ip) => !next.has(ip));
  const newUnused = [...unused.filter((ip) => next.has(ip)), ...added.filter((ip) => !held.has(ip))];
  queueReplace(state.unused, ascending(newUnused));
  queueReplace(state.released, released.filter((ip) => next.has(ip)));
  state.nic = facts;
  return { added: ascending(added), removed: removed.sort(compareIPv4), orphaned: orphaned.sort((a, b) => compareIPv4(a.ip, b.ip)) };
}

function checkedFacts(pool: NicPool): NicFacts {
  const facts = { mac: pool.mac, primaryIp: pool.primaryIp, subnet: pool.subnet, prefixLength: pool.prefixLength, gateway: pool.gateway };
  const problem = factsProblem(facts);
  if (problem !== undefined) throw new PoolSourceError(`pool for ${JSON.stringify(pool.subnet)}: ${problem}`);
  return facts;
}

/** The owner's address: the one it already holds, else the next free one. */
export function allocate(state: IpamState, owner: Owner, opts: AllocateOptions): { ip: string; existing: boolean } {
  const key = ownerKey(owner);
  const holding = holdingOf(state, key);
  if (holding !== undefined) return { ip: holding.ip, existing: true };

  const { maxPods } = opts;
  if (!Number.isSafeInteger(maxPods) || maxPods < 1) throw new InvalidConfigError(`maxPods must be a positive integer, got ${String(maxPods)}`);
  if (state.used >= maxPods) {
    throw new PoolExhaustedError(
      `maxPods ${maxPods} reached: ${state.used} addresses in use (pool size ${poolSize(state)}, ${freeCount(state)} free)`,
    );
  }
  const ip = queueShift(state.unused) ?? queueShift(state.released);
  if (ip === undefined) {
    const where = state.nic ? `pool ${state.nic.subnet}` : 'pool (no pool loaded yet)';
    throw new PoolExhaustedError(
      `no free address in ${where}: pool size ${poolSize(state)}, ${state.used} in use (${state.orphaned} orphaned), maxPods ${maxPods}`,
    );
  }
  const fresh: Holding = { ip };
  if (opts.podName) fresh.podName = opts.podName;
  if (opts.podNamespace) fresh.podNamespace = opts.podNamespace;
  state.holdings[key] = fresh;
  state.used++;
  return { ip, existing: false };
}

/** Free the owner's address; returns it, or undefined if the owner held none. Safe to repeat. */
export function release(state: IpamState, owner: Owner): string | undefined {
  const key = ownerKey(owner);
  const holding = holdingOf(state, key);
  if (holding === undefined) return undefined;
  delete state.holdings[key];
  state.used--;
  if (holding.orphaned) state.orphaned--; // gone from the pool: forget it
  else queuePush(state.released, holding.ip);
  return holding.ip;
}

export function lookup(state: IpamState, owner: Owner): string | undefined {
  return holdingOf(state, ownerKey(owner))?.ip;
}

/** Every held address, ascending by IP. */
export function allocations(state: IpamState): Allocation[] {
  return Object.entries(state.holdings)
    .map(([key, holding]) => {
      const entry: Allocation = { ip: holding.ip, owner: ownerFromKey(key), orphaned: holding.orphaned === true };
      if (holding.podName !== undefined) entry.podName = holding.podName;
      if (holding.podNamespace !== undefined) entry.podNamespace = holding.podNamespace;
      return entry;
    })
    .sort((a, b) => compareIPv4(a.ip, b.ip));
}

/** Free addresses in the order allocate would hand them out. */
export function freeAddresses(state: IpamState): string[] {
  return [...queueValues(state.unused), ...queueValues(state.released)];
}

export function poolSummary(state: IpamState): PoolSummary {
  const summary: PoolSummary = { size: poolSize(state), used: state.used, free: freeCount(state), orphaned: state.orphaned };
  if (state.nic) {
    summary.subnet = state.nic.subnet;
    summary.gateway = state.nic.gateway;
    summary.primaryIp = state.nic.primaryIp;
    summary.mac = state.nic.mac;
  }
  return summary;
}

/** Check a state loaded from disk; throws StoreError naming the first inconsistency. */
export function validateIpamState(x: unknown): IpamState {
  const bad = (what: string): never => {
    throw new StoreError(`ipam state is corrupt: ${what}`);
  };
  if (!isObject(x)) return bad('not an object');
  if (x.version !== 1) bad(`unsupported version ${JSON.stringify(x.version)}`);
  const nic = x.nic === null ? null : validateFacts(x.nic, bad);
  const cidr = nic ? parseCidr(nic.subnet) : undefined;
  const seen = new Set<string>();
  const claim = (ip: unknown, where: string): string => {
    if (typeof ip !== 'string' || parseIPv4(ip) === undefined) return bad(`${where}: ${JSON.stringify(ip)} is not an IPv4 address`);
    if (seen.has(ip)) bad(`${where}: ${ip} appears twice`);
    seen.add(ip);
    return ip;
  };
  for (const name of ['unused', 'released'] as const) {
    const queue = x[name];
    if (!isObject(queue) || !Array.isArray(queue.items) || !Number.isSafeInteger(queue.head)) return bad(`${name} is not a queue`);
    const head = queue.head as number;
    if (head < 0 || head > queue.items.length) bad(`${name}.head ${head} is out of range`);
    for (const ip of queue.items.slice(head)) {
      claim(ip, name);
      if (!cidr || !cidrContains(cidr, parseIPv4(ip as string)!)) bad(`${name}: ${String(ip)} is outside the pool subnet`);
    }
  }
  if (!isObject(x.holdings)) return bad('holdings is not an object');
  let used = 0;
  let orphaned = 0;
  for (const [key, holding] of Object.entries(x.holdings)) {
    const slash = key.lastIndexOf('/');
    if (slash <= 0 || slash === key.length - 1) bad(`holding key ${JSON.stringify(key)} is not "<containerId>/<ifName>"`);
    if (!isObject(holding)) return bad(`holding ${key} is not an object`);
    claim(holding.ip, `holding ${key}`);
    for (const field of ['podName', 'podNamespace'] as const) {
      if (holding[field] !== undefined && typeof holding[field] !== 'string') bad(`holding ${key}: ${field} is not a string`);
    }
    if (holding.orphaned !== undefined && holding.orphaned !== true) bad(`holding ${key}: orphaned must be true or absent`);
    used++;
    if (holding.orphaned) orphaned++;
  }
  if (x.used !== used) bad(`used is ${JSON.stringify(x.used)} but ${used} addresses are held`);
  if (x.orphaned !== orphaned) bad(`orphaned is ${JSON.stringify(x.orphaned)} but ${orphaned} holdings are orphaned`);
  return x as unknown as IpamState;
}

function validateFacts(facts: unknown, bad: (what: string) => never): NicFacts {
  if (!isObject(facts)) return bad('nic is not an object');
  const problem = factsProblem(facts);
  if (problem !== undefined) bad(`nic: ${problem}`);
  return facts as unknown as NicFacts;
}

function factsProblem(facts: Record<string, unknown>): string | undefined {
  const { mac, primaryIp, subnet, prefixLength, gateway } = facts;
  if (typeof mac !== 'string' || (mac !== ANY_MAC && normaliseMac(mac) !== mac)) return `mac ${JSON.stringify(mac)} is not a normalised MAC`;
  if (typeof primaryIp !== 'string' || (primaryIp !== '' && parseIPv4(primaryIp) === undefined)) {
    return `primaryIp ${JSON.stringify(primaryIp)} is not an IPv4 address`;
  }
  const cidr = typeof subnet === 'string' ? parseCidr(subnet) : undefined;
  if (cidr === undefined || cidr.text !== subnet || cidr.prefixLength !== prefixLength) {
    return `subnet ${JSON.stringify(subnet)} with prefixLength ${JSON.stringify(prefixLength)} is not a canonical IPv4 CIDR`;
  }
  if (typeof gateway !== 'string' || parseIPv4(gateway) === undefined) return `gateway ${JSON.stringify(gateway)} is not an IPv4 address`;
  return undefined;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}
