// The policy compiler's fast paths against what they replaced, byte for
// byte, on random inputs (test/unit/policy-reference-v1.ts holds the old
// code): normalizePeers (numeric keys, one sorted pass), normalizeRules
// (unions over distinct peer lists, peer lists named by hash, order by the
// ports' text) and the ebpf compileDirection (canonical CIDRs parsed without
// Buffers, one port union per rule set), and the peers shared by rules
// written alike staying right under churn. Bounded: fixed seeds and counts; a
// small address universe so that duplicates, nesting and excepts collide.
import t from 'tap';
import { world } from '../../bench/policy-compile.js';
import { compileDirection } from '../../control/dataplane/ebpf/policy.js';
import { compilePolicies, PolicyCompiler } from '../../control/policy/compile.js';
import { formatCidr4, type Cidr4 } from '../../control/policy/cidr.js';
import { normalizePeers, normalizeRules, type InternalPeer, type RuleAtom } from '../../control/policy/normalize.js';
import type { CompiledRule, DirectionPolicy, L4Protocol, PolicySnapshot, PortRange } from '../../control/policy/types.js';
import { randomDirection } from '../faults/model/policy.js';
import { Rng } from '../faults/helpers/scale.js';
import { compileDirectionV1, normalizePeersV1, normalizeRulesV1 } from './policy-reference-v1.js';

const BASES = [0x0a000000, 0x0a000100, 0x0a010000, 0xc0a80000, 0xac100000, 0];
const PREFIXES = [0, 8, 16, 23, 24, 25, 28, 30, 31, 32, 32, 32, 32];

function randomCidr(rng: Rng, within?: Cidr4): Cidr4 {
  const prefix = within ? rng.range(within.prefix, 32) : rng.pick(PREFIXES);
  const raw = within ? within.base + rng.int(Math.min(2 ** (32 - within.prefix), 1024)) : rng.pick(BASES) + rng.int(1024);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return { base: (raw & mask) >>> 0, prefix };
}

/** Pod addresses are shared peer objects, as the compiler makes them. */
function hostPool(rng: Rng): InternalPeer[] {
  return Array.from({ length: 60 }, () => ({ cidr: { base: (rng.pick(BASES) + rng.int(1024)) >>> 0, prefix: 32 }, except: [] }));
}

function randomPeer(rng: Rng, hosts: InternalPeer[]): InternalPeer {
  if (rng.chance(0.6)) return rng.pick(hosts);
  const cidr = randomCidr(rng);
  const except: Cidr4[] = [];
  if (rng.chance(0.4)) for (let n = rng.int(4); n > 0; n--) except.push(rng.chance(0.85) ? randomCidr(rng, cidr) : randomCidr(rng));
  return { cidr, except };
}

function randomPeers(rng: Rng, hosts: InternalPeer[], max: number): InternalPeer[] {
  return Array.from({ length: rng.int(max) }, () => randomPeer(rng, hosts));
}

const PROTOS: L4Protocol[] = ['TCP', 'UDP', 'SCTP'];
function randomPorts(rng: Rng): PortRange[] | null {
  if (rng.chance(0.25)) return null;
  return Array.from({ length: rng.int(3) + (rng.chance(0.05) ? 0 : 1) }, () => {
    const port = rng.pick([53, 80, 81, 443, 8080, 1000]);
    return { protocol: rng.pick(PROTOS), port, endPort: rng.chance(0.7) ? port : port + rng.int(40) };
  });
}

const text = (peers: InternalPeer[]): string[] => peers.map((p) => `${formatCidr4(p.cidr)}-${p.except.map(formatCidr4).join(',')}`);

t.test('normalizePeers: same peers, same order as before', async (t) => {
  const rng = new Rng(20261205);
  let kept = 0;
  for (let i = 0; i < 3000; i++) {
    const hosts = hostPool(rng);
    const peers = randomPeers(rng, hosts, 40);
    // Also unions of already-normalized lists, as merged rules give.
    const input = rng.chance(0.5) ? peers : [...normalizePeers(peers), ...normalizePeers(randomPeers(rng, hosts, 30)), ...normalizePeers(peers)];
    const want = text(normalizePeersV1(input));
    t.strictSame(text(normalizePeers(input)), want, `case ${i}`);
    kept += want.length;
  }
  t.ok(kept > 10_000, `peers kept: ${kept}`);
});

t.test('normalizeRules: same compiled rules, byte for byte', async (t) => {
  const rng = new Rng(42);
  let rules = 0;
  for (let i = 0; i < 1500; i++) {
    const hosts = hostPool(rng);
    // Rules share peer lists and ports, as a policy's resolved rule is shared by directions.
    const lists = Array.from({ length: 4 }, () => (rng.chance(0.15) ? null : randomPeers(rng, hosts, 25)));
    const ports = Array.from({ length: 4 }, () => randomPorts(rng));
    const atoms: RuleAtom[] = Array.from({ length: rng.int(8) }, () => ({
      peers: rng.chance(0.1) ? [] : rng.pick(lists),
      ports: rng.pick(ports),
      sources: [`ns/p${rng.int(5)}`],
    }));
    const want = JSON.stringify(normalizeRulesV1(atoms));
    t.equal(JSON.stringify(normalizeRules(atoms)), want, `case ${i}`);
    rules += (JSON.parse(want) as CompiledRule[]).length;
  }
  t.ok(rules > 2000, `rules compiled: ${rules}`);
});

function outcome(f: (d: DirectionPolicy) => { digest: Buffer }, dir: DirectionPolicy): string {
  try {
    return JSON.stringify(f(dir), (k, v: unknown) => (k === 'digest' ? Buffer.from(v as { data: number[] }['data']).toString('hex') : v));
  } catch (e) {
    return `throws ${(e as Error).constructor.name}: ${(e as Error).message}`;
  }
}

t.test('compileDirection: same entries and digest as before', async (t) => {
  const rng = new Rng(7);
  for (let i = 0; i < 1500; i++) {
    const dir = randomDirection(rng);
    if (!dir.isolated) continue;
    t.equal(outcome(compileDirection, dir), outcome(compileDirectionV1, dir), `random ${i}`);
  }
  // Many /32 peers sharing a few rule sets, under blocks with excepts: what memoization keys on.
  for (let i = 0; i < 40; i++) {
    const hosts = hostPool(rng);
    const atoms: RuleAtom[] = Array.from({ length: 1 + rng.int(5) }, () => ({ peers: randomPeers(rng, hosts, 80), ports: randomPorts(rng), sources: ['ns/p'] }));
    const dir: DirectionPolicy = { isolated: true, rules: normalizeRules(atoms) };
    t.equal(outcome(compileDirection, dir), outcome(compileDirectionV1, dir), `large ${i}`);
  }
  // Text the compiler never emits goes the old way: accepted alike, or refused alike.
  const odd = ['10.0.0.1/24', '10.0.0.0/08', '10.0.0.0', '010.0.0.0/8', '10.0.0.0/33', '10.0.0/8', '1.2.3.4/', '/8', '10.0.0.0/8/1', 'fd00::/8', '256.0.0.0/8', '10.0.0.0/ 8', '0.0.0.0/0'];
  for (const cidr of odd) {
    for (const dir of [
      { isolated: true, rules: [{ peers: [{ family: 'ipv4' as const, cidr, except: [] }], ports: null, sources: [] }] },
      { isolated: true, rules: [{ peers: [{ family: 'ipv4' as const, cidr: '0.0.0.0/0', except: [cidr] }], ports: null, sources: [] }] },
    ]) {
      t.equal(outcome(compileDirection, dir), outcome(compileDirectionV1, dir), `cidr ${JSON.stringify(cidr)}`);
    }
  }
});

t.test('rules written alike share their peers, and churn keeps incremental == from scratch', async (t) => {
  // The bench's world: every policy of a namespace admits the same web tier and team.
  const { snap, locals } = world(60, 300, 30);
  const c = new PolicyCompiler();
  const same = (step: string, s: PolicySnapshot): void => {
    t.equal(JSON.stringify(c.update(s, locals).result()), JSON.stringify(compilePolicies(s, locals)), step);
  };
  same('initial', snap);
  let pods = snap.pods;
  for (let i = 0; i < 12; i++) {
    // A web-tier pod in ns0 comes and goes; another is relabelled out of the tier and back.
    const extra = { namespace: 'ns0', name: `churn${i}`, labels: { app: 'app0', tier: 'web' }, ips: [{ family: 'ipv4' as const, address: `10.9.0.${i + 1}` }], namedPorts: [] };
    pods = i % 2 === 0 ? [...pods, extra] : pods.filter((p) => !p.name.startsWith('churn'));
    pods = pods.map((p) => (p.name === 'p20' ? { ...p, labels: { ...p.labels, tier: i % 3 === 0 ? 'db' : 'web' } } : p));
    same(`step ${i}`, { ...snap, pods });
  }
});
