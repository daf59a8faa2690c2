// Thousands of seeded random allocate/release/refresh/round-trip operations,
// checked after every step against a naive model that states the rules
// directly (free = pool minus held; pick the smallest (last release, IP)),
// not as queues. Bounded: fixed seeds, fixed op counts, a 48-address universe.
import t from 'tap';
import { PoolExhaustedError } from '../../control/errors.js';
import {
  allocate,
  allocations,
  applyPool,
  emptyIpamState,
  freeAddresses,
  lookup,
  poolSummary,
  release,
  validateIpamState,
  type IpamState,
} from '../../control/ipam/allocator.js';
import type { Owner } from '../../control/ipam/types.js';
import { Rng } from '../faults/helpers/scale.js';

const SEEDS = [1, 7, 42, 2024, 90210];
const OPS_PER_SEED = 3_000;
// Spans one-, two- and three-digit octets and two /24s, so lexical order would differ from numeric.
const UNIVERSE = Array.from({ length: 48 }, (_, i) => `10.1.${i % 2}.${2 + i * 5}`);
const OWNERS: Owner[] = Array.from({ length: 40 }, (_, i) => ({ containerId: `c${i % 32}`, ifName: i < 32 ? 'eth0' : 'net1' }));
const keyOf = (o: Owner): string => `${o.containerId}/${o.ifName}`;
const ipNumber = (ip: string): number => ip.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);


/** The rules, stated plainly. */
class NaiveModel {
  pool = new Set<string>();
  held = new Map<string, string>(); // owner key -> ip
  /** free-address history: -1 = never handed out since it (re)entered the pool, n = the n-th release */
  lastRelease = new Map<string, number>();
  releases = 0;

  heldIps(): Set<string> {
    return new Set(this.held.values());
  }
  free(): string[] {
    const held = this.heldIps();
    return [...this.pool]
      .filter((ip) => !held.has(ip))
      .sort((a, b) => this.lastRelease.get(a)! - this.lastRelease.get(b)! || ipNumber(a) - ipNumber(b));
  }
  refresh(next: Set<string>): void {
    for (const ip of [...this.lastRelease.keys()]) if (!next.has(ip)) this.lastRelease.delete(ip);
    for (const ip of next) if (!this.lastRelease.has(ip)) this.lastRelease.set(ip, -1);
    this.pool = new Set(next);
  }
  /** The IP the key holds or gets, or 'exhausted'. */
  allocate(key: string, maxPods: number): string {
    const mine = this.held.get(key);
    if (mine !== undefined) return mine;
    if (this.held.size >= maxPods) return 'exhausted';
    const ip = this.free()[0];
    if (ip === undefined) return 'exhausted';
    this.held.set(key, ip);
    return ip;
  }
  release(key: string): string | undefined {
    const ip = this.held.get(key);
    if (ip === undefined) return undefined;
    this.held.delete(key);
    if (this.pool.has(ip)) this.lastRelease.set(ip, ++this.releases);
    return ip;
  }
}

function check(state: IpamState, model: NaiveModel, where: string): string | undefined {
  const held = allocations(state);
  const ips = held.map((a) => a.ip);
  if (new Set(ips).size !== ips.length) return `${where}: duplicate IP among ${ips.join(',')}`;
  for (const a of held) {
    if (model.held.get(keyOf(a.owner)) !== a.ip) return `${where}: ${keyOf(a.owner)} holds ${a.ip}, model says ${model.held.get(keyOf(a.owner))}`;
    if (a.orphaned === model.pool.has(a.ip)) return `${where}: ${a.ip} orphaned=${a.orphaned} but in pool=${model.pool.has(a.ip)}`;
  }
  if (held.length !== model.held.size) return `${where}: ${held.length} allocations, model has ${model.held.size}`;
  const free = freeAddresses(state);
  const expected = model.free();
  if (free.join() !== expected.join()) return `${where}: free order ${free.join()} != model ${expected.join()}`;
  for (const ip of free) if (!model.pool.has(ip)) return `${where}: free ${ip} is outside the pool`;
  const s = poolSummary(state);
  const orphans = held.filter((a) => a.orphaned).length;
  if (s.size !== model.pool.size || s.used !== held.length || s.free !== free.length || s.orphaned !== orphans) {
    return `${where}: summary ${JSON.stringify(s)} disagrees with the model`;
  }
  return undefined;
}

for (const seed of SEEDS) {
  t.test(`seed ${seed}: ${OPS_PER_SEED} random operations agree with the naive model`, async (t) => {
    const rng = new Rng(seed);
    const random = (): number => rng.next();
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const maxPods = 24 + Math.floor(random() * 20);
    let state = emptyIpamState();
    const model = new NaiveModel();
    const counts = { allocated: 0, existing: 0, exhausted: 0, released: 0, refreshes: 0, orphaned: 0, roundTrips: 0 };
    let failure: string | undefined;

    for (let op = 0; op < OPS_PER_SEED && failure === undefined; op++) {
      const roll = random();
      const where = `seed ${seed} op ${op}`;
      if (roll < 0.45) {
        const who = pick(OWNERS);
        const expected = model.allocate(keyOf(who), maxPods);
        try {
          const got = allocate(state, who, { maxPods });
          if (expected === 'exhausted') failure = `${where}: allocate gave ${got.ip}, model says exhausted`;
          else if (got.ip !== expected) failure = `${where}: allocate gave ${got.ip}, model says ${expected}`;
          else counts[got.existing ? 'existing' : 'allocated']++;
        } catch (err) {
          if (!(err instanceof PoolExhaustedError)) throw err;
          if (expected !== 'exhausted') failure = `${where}: exhausted, model says ${expected}`;
          counts.exhausted++;
        }
      } else if (roll < 0.85) {
        const who = pick(OWNERS);
        const expected = model.release(keyOf(who));
        const got = release(state, who);
        if (got !== expected) failure = `${where}: release gave ${got}, model says ${expected}`;
        if (got !== undefined) counts.released++;
        if (lookup(state, who) !== undefined) failure = `${where}: still held after release`;
      } else if (roll < 0.97) {
        const next = new Set(model.pool);
        if (random() < 0.1) {
          next.clear();
          for (const ip of UNIVERSE) if (random() < 0.7) next.add(ip);
        } else {
          const toggles = 1 + Math.floor(random() * 5);
          for (let i = 0; i < toggles; i++) {
            const ip = pick(UNIVERSE);
            if (!next.delete(ip)) next.add(ip);
          }
        }
        const heldBefore = model.heldIps();
        const wasInPool = new Set(model.pool);
        model.refresh(next);
        const change = applyPool(state, {
          mac: '00:0d:3a:00:00:01', primaryIp: '10.1.0.4', subnet: '10.1.0.0/23', prefixLength: 23, gateway: '10.1.0.1',
          addresses: [...next].sort(() => random() - 0.5),
        });
        const expectOrphaned = [...heldBefore].filter((ip) => wasInPool.has(ip) && !next.has(ip)).sort((a, b) => ipNumber(a) - ipNumber(b));
        if (change.orphaned.map((o) => o.ip).join() !== expectOrphaned.join()) failure = `${where}: orphaned ${JSON.stringify(change.orphaned)} != ${expectOrphaned.join()}`;
        const expectRemoved = [...wasInPool].filter((ip) => !next.has(ip) && !heldBefore.has(ip)).sort((a, b) => ipNumber(a) - ipNumber(b));
        if (change.removed.join() !== expectRemoved.join()) failure = `${where}: removed ${change.removed.join()} != ${expectRemoved.join()}`;
        const expectAdded = [...next].filter((ip) => !wasInPool.has(ip)).sort((a, b) => ipNumber(a) - ipNumber(b));
        if (change.added.join() !== expectAdded.join()) failure = `${where}: added ${change.added.join()} != ${expectAdded.join()}`;
        counts.refreshes++;
        counts.orphaned += change.orphaned.length;
      } else {
        state = validateIpamState(JSON.parse(JSON.stringify(state)));
        counts.roundTrips++;
      }
      failure ??= check(state, model, where);
    }

    t.equal(failure, undefined, 'implementation and model agree after every operation');
    t.comment(JSON.stringify(counts));
    // The run must have exercised every path, or it proves little.
    for (const [name, count] of Object.entries(counts)) t.ok(count > 0, `${name} happened (${count})`);
  });
}
