// The allocator's rules, one at a time: same owner same IP, exhaustion and
// maxPods, idempotent release, least-recently-released reuse, pool refresh
// with orphans, the JSON round trip, and corruption detection.
import t, { type Test } from 'tap';
import { CniCode, InvalidConfigError, InvalidEnvError, PoolExhaustedError, PoolSourceError, StoreError } from '../../control/errors.js';
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
import type { NicPool, Owner } from '../../control/ipam/types.js';

const owner = (containerId: string, ifName = 'eth0'): Owner => ({ containerId, ifName });
const opts = { maxPods: 250 };

function pool(addresses: string[], subnet = '10.240.0.0/16'): NicPool {
  return { mac: '00:0d:3a:f9:dc:a6', primaryIp: '10.240.0.4', subnet, prefixLength: Number(subnet.split('/')[1]), gateway: '10.240.0.1', addresses };
}
const range = (from: number, to: number): string[] => Array.from({ length: to - from + 1 }, (_, i) => `10.240.0.${from + i}`);

function loaded(addresses: string[]): IpamState {
  const state = emptyIpamState();
  applyPool(state, pool(addresses));
  return state;
}

function expectExhausted(t: Test, fn: () => unknown, message: RegExp): void {
  try {
    fn();
    t.fail(`expected PoolExhaustedError matching ${message}`);
  } catch (err) {
    t.ok(err instanceof PoolExhaustedError, `PoolExhaustedError, got ${(err as Error).name}: ${(err as Error).message}`);
    t.equal((err as PoolExhaustedError).cniCode, CniCode.IpamExhausted);
    t.match((err as Error).message, message);
  }
}

t.test('an empty state has nothing to give', async (t) => {
  const state = emptyIpamState();
  t.same(poolSummary(state), { size: 0, used: 0, free: 0, orphaned: 0 });
  expectExhausted(t, () => allocate(state, owner('a'), opts), /no free address in pool \(no pool loaded yet\): pool size 0, 0 in use/);
  t.same(allocations(state), []);
});

t.test('the first pool: everything added, ascending', async (t) => {
  const state = emptyIpamState();
  const change = applyPool(state, pool(['10.240.0.10', '10.240.0.5', '10.240.0.9', '10.240.0.5']));
  t.same(change, { added: ['10.240.0.5', '10.240.0.9', '10.240.0.10'], removed: [], orphaned: [] });
  t.same(poolSummary(state), {
    size: 3, used: 0, free: 3, orphaned: 0, subnet: '10.240.0.0/16', gateway: '10.240.0.1', primaryIp: '10.240.0.4', mac: '00:0d:3a:f9:dc:a6',
  });
  t.same(freeAddresses(state), ['10.240.0.5', '10.240.0.9', '10.240.0.10'], 'numeric, not lexical, order');
  t.same(applyPool(state, pool(['10.240.0.5', '10.240.0.9', '10.240.0.10'])), { added: [], removed: [], orphaned: [] }, 'same pool again: no change');
});

t.test('the same owner gets the same IP; never two IPs for one owner', async (t) => {
  const state = loaded(range(5, 9));
  t.same(allocate(state, owner('a'), { maxPods: 10, podName: 'web-1', podNamespace: 'default' }), { ip: '10.240.0.5', existing: false });
  t.same(allocate(state, owner('a'), opts), { ip: '10.240.0.5', existing: true });
  t.same(allocate(state, owner('a', 'net1'), opts), { ip: '10.240.0.6', existing: false }, 'another interface of the same container is another owner');
  t.same(allocate(state, owner('b'), opts), { ip: '10.240.0.7', existing: false });
  t.equal(lookup(state, owner('a')), '10.240.0.5');
  t.equal(lookup(state, owner('zzz')), undefined);
  t.same(allocations(state), [
    { ip: '10.240.0.5', owner: owner('a'), podName: 'web-1', podNamespace: 'default', orphaned: false },
    { ip: '10.240.0.6', owner: owner('a', 'net1'), orphaned: false },
    { ip: '10.240.0.7', owner: owner('b'), orphaned: false },
  ]);
  t.same(poolSummary(state).used, 3);
});

t.test('container IDs may contain "/"; interface names may not', async (t) => {
  const state = loaded(range(5, 9));
  allocate(state, owner('pod/with/slashes', 'eth0'), opts);
  t.same(allocations(state)[0]?.owner, owner('pod/with/slashes', 'eth0'));
  t.throws(() => allocate(state, owner('c', 'eth/0'), opts), InvalidEnvError);
  t.throws(() => allocate(state, owner('', 'eth0'), opts), InvalidEnvError);
  t.throws(() => release(state, owner('c', '')), InvalidEnvError);
});

t.test('exhaustion names pool size, use and maxPods; an existing owner still gets its IP', async (t) => {
  const state = loaded(range(5, 6));
  allocate(state, owner('a'), opts);
  allocate(state, owner('b'), opts);
  expectExhausted(t, () => allocate(state, owner('c'), opts), /no free address in pool 10.240.0.0\/16: pool size 2, 2 in use \(0 orphaned\), maxPods 250/);
  t.same(allocate(state, owner('a'), opts), { ip: '10.240.0.5', existing: true });
  release(state, owner('b'));
  t.same(allocate(state, owner('c'), opts), { ip: '10.240.0.6', existing: false });
});

t.test('maxPods caps the number of held addresses even with free ones left', async (t) => {
  const state = loaded(range(5, 20));
  allocate(state, owner('a'), { maxPods: 2 });
  allocate(state, owner('b'), { maxPods: 2 });
  expectExhausted(t, () => allocate(state, owner('c'), { maxPods: 2 }), /maxPods 2 reached: 2 addresses in use \(pool size 16, 14 free\)/);
  t.same(allocate(state, owner('b'), { maxPods: 2 }), { ip: '10.240.0.6', existing: true }, 'an owner at the limit keeps its address');
  t.same(allocate(state, owner('c'), { maxPods: 3 }).existing, false);
  t.throws(() => allocate(state, owner('d'), { maxPods: 0 }), InvalidConfigError);
  t.throws(() => allocate(state, owner('d'), { maxPods: 1.5 }), InvalidConfigError);
});

t.test('release is idempotent and returns what it freed', async (t) => {
  const state = loaded(range(5, 7));
  allocate(state, owner('a'), opts);
  t.equal(release(state, owner('a')), '10.240.0.5');
  t.equal(release(state, owner('a')), undefined);
  t.equal(release(state, owner('never')), undefined);
  t.same(poolSummary(state), { ...poolSummary(state), size: 3, used: 0, free: 3 });
  t.equal(lookup(state, owner('a')), undefined);
});

t.test('hand-out order: never-used first (ascending), then least recently released', async (t) => {
  const state = loaded(range(5, 8));
  t.equal(allocate(state, owner('a'), opts).ip, '10.240.0.5');
  release(state, owner('a'));
  t.equal(allocate(state, owner('b'), opts).ip, '10.240.0.6', 'a just-released address is not handed out while others are free');
  t.equal(allocate(state, owner('c'), opts).ip, '10.240.0.7');
  t.equal(allocate(state, owner('d'), opts).ip, '10.240.0.8');
  release(state, owner('c'));
  release(state, owner('b'));
  t.same(freeAddresses(state), ['10.240.0.5', '10.240.0.7', '10.240.0.6']);
  t.equal(allocate(state, owner('e'), opts).ip, '10.240.0.5', 'released first, reused first');
  t.equal(allocate(state, owner('f'), opts).ip, '10.240.0.7');
  t.equal(allocate(state, owner('g'), opts).ip, '10.240.0.6');
});

t.test('addresses added by a refresh are handed out before released ones', async (t) => {
  const state = loaded(range(5, 6));
  allocate(state, owner('a'), opts);
  allocate(state, owner('b'), opts);
  release(state, owner('a'));
  t.same(applyPool(state, pool(range(5, 8))), { added: ['10.240.0.7', '10.240.0.8'], removed: [], orphaned: [] });
  t.same(freeAddresses(state), ['10.240.0.7', '10.240.0.8', '10.240.0.5']);
});

t.test('refresh: free addresses leave, held ones become orphans and are never reused', async (t) => {
  const state = loaded(range(5, 9));
  allocate(state, owner('a'), { ...opts, podName: 'a' }); // .5
  allocate(state, owner('b'), opts); // .6
  allocate(state, owner('c'), opts); // .7
  release(state, owner('c'));

  const change = applyPool(state, pool(['10.240.0.5', '10.240.0.8', '10.240.0.20']));
  t.same(change, {
    added: ['10.240.0.20'],
    removed: ['10.240.0.7', '10.240.0.9'],
    orphaned: [{ ip: '10.240.0.6', owner: owner('b') }],
  });
  t.same(poolSummary(state), { ...poolSummary(state), size: 3, used: 2, free: 2, orphaned: 1 });
  t.same(allocations(state).map((a) => [a.ip, a.orphaned]), [['10.240.0.5', false], ['10.240.0.6', true]]);
  t.same(allocate(state, owner('b'), opts), { ip: '10.240.0.6', existing: true }, 'the orphan stays with its owner');
  t.same(applyPool(state, pool(['10.240.0.5', '10.240.0.8', '10.240.0.20'])).orphaned, [], 'an orphan is reported once');

  t.equal(release(state, owner('b')), '10.240.0.6');
  t.same(poolSummary(state), { ...poolSummary(state), size: 3, used: 1, free: 2, orphaned: 0 });
  t.notOk(freeAddresses(state).includes('10.240.0.6'), 'a released orphan is not free');
  t.equal(allocate(state, owner('d'), opts).ip, '10.240.0.8');
  t.equal(allocate(state, owner('e'), opts).ip, '10.240.0.20');
  expectExhausted(t, () => allocate(state, owner('f'), opts), /pool size 3, 3 in use/);
});

t.test('refresh: an orphan that comes back is in the pool again (still held)', async (t) => {
  const state = loaded(range(5, 6));
  allocate(state, owner('a'), opts); // .5
  applyPool(state, pool(['10.240.0.6']));
  t.equal(poolSummary(state).orphaned, 1);
  t.same(applyPool(state, pool(range(5, 6))), { added: ['10.240.0.5'], removed: [], orphaned: [] });
  t.same(poolSummary(state), { ...poolSummary(state), size: 2, used: 1, free: 1, orphaned: 0 });
  t.same(freeAddresses(state), ['10.240.0.6'], 'the returning orphan is held, not free');
  release(state, owner('a'));
  t.same(freeAddresses(state), ['10.240.0.6', '10.240.0.5']);
});

t.test('refresh: a pool that is not a pool is refused without touching the state', async (t) => {
  const state = loaded(range(5, 6));
  const before = JSON.stringify(state);
  t.throws(() => applyPool(state, pool(['10.240.0.5', '10.241.0.5'])), PoolSourceError);
  t.throws(() => applyPool(state, pool(['10.240.0.500'])), PoolSourceError);
  t.throws(() => applyPool(state, { ...pool(range(5, 6)), subnet: '10.240.0.3/16' }), PoolSourceError);
  t.throws(() => applyPool(state, { ...pool(range(5, 6)), prefixLength: 24 }), PoolSourceError);
  t.throws(() => applyPool(state, { ...pool(range(5, 6)), mac: '00:0D:3A:F9:DC:A6' }), PoolSourceError);
  t.equal(JSON.stringify(state), before);
});

t.test('JSON round trip preserves allocations, orphans, order and counters', async (t) => {
  const state = loaded(range(5, 12));
  allocate(state, owner('a'), { ...opts, podName: 'p', podNamespace: 'ns' });
  allocate(state, owner('b'), opts);
  allocate(state, owner('c'), opts);
  release(state, owner('a'));
  applyPool(state, pool(range(5, 6).concat(range(8, 14))));
  const copy = validateIpamState(JSON.parse(JSON.stringify(state)));
  t.same(copy, state);
  t.same(allocations(copy), allocations(state));
  t.same(poolSummary(copy), poolSummary(state));
  t.same(freeAddresses(copy), freeAddresses(state));
  for (const s of [state, copy]) {
    allocate(s, owner('x'), opts);
    release(s, owner('b'));
    allocate(s, owner('y'), opts);
  }
  t.same(copy, state, 'the copy behaves exactly like the original');
});

t.test('a large pool: queues stay compact as addresses cycle', async (t) => {
  const addresses: string[] = [];
  for (let i = 2; i < 65_000; i++) addresses.push(`10.240.${i >> 8}.${i & 255}`);
  const state = emptyIpamState();
  applyPool(state, pool(addresses));
  const big = { maxPods: 100_000 };
  for (let i = 0; i < 30_000; i++) allocate(state, owner(`c${i}`), big);
  for (let i = 0; i < 20_000; i++) release(state, owner(`c${i}`));
  for (let i = 30_000; i < 50_000; i++) allocate(state, owner(`c${i}`), big);
  const s = poolSummary(state);
  t.same([s.size, s.used, s.free], [addresses.length, 30_000, addresses.length - 30_000]);
  const live = state.unused.items.length - state.unused.head + state.released.items.length - state.released.head;
  t.equal(live, s.free);
  t.ok(state.unused.items.length <= 2 * (state.unused.items.length - state.unused.head) + 64, 'spent unused slots are dropped');
  t.ok(state.released.items.length <= 2 * (state.released.items.length - state.released.head) + 64, 'spent released slots are dropped');
  t.equal(new Set(allocations(state).map((a) => a.ip)).size, 30_000, 'no duplicates');
  validateIpamState(JSON.parse(JSON.stringify(state)));
});

t.test('validateIpamState: corruption is a StoreError', async (t) => {
  const good = loaded(range(5, 9));
  allocate(good, owner('a'), opts);
  allocate(good, owner('b'), opts);
  t.same(validateIpamState(JSON.parse(JSON.stringify(good))), good);
  t.same(validateIpamState(emptyIpamState()), emptyIpamState());

  // Corrupting a parsed document means writing wrong types into it: the fields the cases touch are unknown.
  interface LooseQueue { items: unknown[]; head: unknown }
  interface LooseDoc {
    version: unknown;
    unused: LooseQueue;
    released?: LooseQueue;
    used: unknown;
    orphaned: unknown;
    holdings: Record<string, Record<string, unknown>>;
    nic: Record<string, unknown> | null;
  }
  const corrupt = (name: string, mutate: (s: LooseDoc) => void, message: RegExp): void => {
    const s = JSON.parse(JSON.stringify(good)) as LooseDoc;
    mutate(s);
    t.throws(() => validateIpamState(s), { name: 'StoreError', message }, name);
  };
  t.throws(() => validateIpamState(null), StoreError);
  t.throws(() => validateIpamState([]), StoreError);
  corrupt('version', (s) => (s.version = 2), /unsupported version 2/);
  corrupt('duplicate free and held', (s) => s.unused.items.push('10.240.0.5'), /10.240.0.5 appears twice/);
  corrupt('duplicate holdings', (s) => (s.holdings['b/eth0']!.ip = '10.240.0.5'), /appears twice/);
  corrupt('bad address', (s) => (s.holdings['a/eth0']!.ip = 'x'), /"x" is not an IPv4 address/);
  corrupt('free outside subnet', (s) => s.released!.items.push('10.250.0.1'), /outside the pool subnet/);
  corrupt('head past the end', (s) => (s.unused.head = 99), /unused.head 99 is out of range/);
  corrupt('queue missing', (s) => delete s.released, /released is not a queue/);
  corrupt('used counter', (s) => (s.used = 7), /used is 7 but 2 addresses are held/);
  corrupt('orphaned counter', (s) => (s.orphaned = 1), /orphaned is 1 but 0 holdings are orphaned/);
  corrupt('orphaned flag', (s) => (s.holdings['a/eth0']!.orphaned = false), /orphaned must be true or absent/);
  corrupt('bad key', (s) => (s.holdings['noslash'] = { ip: '10.240.0.9' }), /holding key "noslash"/);
  corrupt('pod name type', (s) => (s.holdings['a/eth0']!.podName = 3), /podName is not a string/);
  corrupt('nic subnet', (s) => (s.nic!.subnet = '10.240.0.1/16'), /nic: subnet "10.240.0.1\/16"/);
  corrupt('nic mac', (s) => (s.nic!.mac = 'AA:BB'), /nic: mac "AA:BB"/);
  corrupt('free without a nic', (s) => (s.nic = null), /outside the pool subnet/);
});
