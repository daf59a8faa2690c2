// The ebpf policy compiler (control/dataplane/ebpf/policy.ts): the LPM entries
// it writes, looked up the way the kernel does (longest prefix, then the port
// set), must give the same verdict as the compiled form's plain meaning, for
// thousands of random policies and packets. Plus the edges stated directly.
import t from 'tap';
import { compileDirection, directionAllows, rangePrefixes, PROTO_NUM, type CompiledDirection } from '../../control/dataplane/ebpf/policy.js';
import { POL_M } from '../../control/dataplane/ebpf/layouts.js';
import type { DirectionPolicy } from '../../control/policy/types.js';
import { randomDirection, rulesAllow } from '../faults/model/policy.js';
import { Rng } from '../faults/helpers/scale.js';
import { ipNum } from '../faults/model/packet.js';

/** What the programs do with the entries: bpf/lib/policy.h pol_rules_allow. */
function lpmAllows(c: CompiledDirection, addr: number, proto: number, port: number | null): boolean {
  let best: (typeof c.cidrs)[number] | undefined;
  for (const e of c.cidrs) {
    const len = e.cidr.prefixlen;
    const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
    if (((addr & mask) >>> 0) === ipNum(e.cidr.addr) && (!best || len > best.cidr.prefixlen)) best = e;
  }
  if (!best) return false;
  const set = best.match.set;
  if (best.match.flags & POL_M.ANY_PORT) return true;
  if (!best.match.set || port === null || ![6, 17, 132].includes(proto)) return false;
  return c.ports.some((p) => p.set === set && p.proto === proto && port >> (16 - p.bits) === p.port >> (16 - p.bits));
}

const ADDRS = ['10.240.0.4', '10.240.0.5', '10.240.0.6', '10.240.0.9', '10.240.0.20', '10.240.0.17', '10.240.3.1', '10.96.0.10', '172.16.1.10', '172.31.0.1', '203.0.113.10', '203.0.113.99', '198.51.100.77', '168.63.129.16', '224.0.0.251', '8.8.8.8', '0.0.0.1'];
const PORTS = [1, 50, 53, 80, 100, 101, 443, 999, 1000, 4000, 4001, 5000, 12000, 12001, 25972, 30318, 65535];

t.test('random policies: LPM entries decide exactly like the rules', async (t) => {
  const rng = new Rng(20261205);
  let checked = 0;
  let allowed = 0;
  for (let i = 0; i < 400; i++) {
    const dir = randomDirection(rng);
    if (!dir.isolated) continue;
    const c = compileDirection(dir);
    for (let j = 0; j < 60; j++) {
      const addr = rng.chance(0.8) ? ipNum(rng.pick(ADDRS)) : rng.int(0xffffffff);
      const proto = rng.pick([6, 17, 132, 1, 47]);
      const port = proto === 1 || proto === 47 || rng.chance(0.05) ? null : rng.pick(PORTS);
      const want = rulesAllow(dir, addr, proto, port);
      const got = lpmAllows(c, addr, proto, port);
      if (want !== got) {
        t.fail(`mismatch: ${JSON.stringify({ dir, addr, proto, port, want, got, entries: c })}`);
        return;
      }
      checked++;
      if (want) allowed++;
    }
  }
  t.ok(checked > 10_000, `${checked} verdicts agree`);
  t.ok(allowed > checked / 10 && allowed < (checked * 9) / 10, `both verdicts common (${allowed} allowed)`);
});

t.test('port ranges become exact LPM prefixes', async (t) => {
  t.same(rangePrefixes(80, 80), [{ port: 80, bits: 16 }]);
  t.same(rangePrefixes(1, 65535).length, 16, '1, 2-3, 4-7, ... 32768-65535');
  t.same(rangePrefixes(1000, 2047), [{ port: 1000, bits: 13 }, { port: 1008, bits: 12 }, { port: 1024, bits: 6 }]);
  for (const [lo, hi] of [[1, 1], [3, 17], [80, 90], [1000, 2047], [30000, 32767], [65534, 65535]] as const) {
    const covered = new Set<number>();
    for (const p of rangePrefixes(lo, hi)) for (let x = p.port; x < p.port + 2 ** (16 - p.bits); x++) covered.add(x);
    t.same([Math.min(...covered), Math.max(...covered), covered.size], [lo, hi, hi - lo + 1], `${lo}-${hi}`);
  }
});

t.test('the edges, stated directly', async (t) => {
  const ipv4 = (cidr: string, except: string[] = []) => ({ family: 'ipv4' as const, cidr, except });
  const except: DirectionPolicy = { isolated: true, rules: [{ peers: [ipv4('10.0.0.0/8', ['10.1.0.0/16'])], ports: null, sources: [] }] };
  const c = compileDirection(except);
  t.same(c.cidrs.map((e) => `${e.cidr.addr}/${e.cidr.prefixlen}:${e.match.flags}`), ['10.0.0.0/8:1', '10.1.0.0/16:0'], 'an except is an entry that allows nothing');
  t.equal(directionAllows(except, '10.2.0.1', 6, 80), true);
  t.equal(directionAllows(except, '10.1.0.1', 6, 80), false);
  t.equal(directionAllows({ isolated: false, rules: [] }, '1.2.3.4', 6, 80), true, 'not isolated: everything');
  t.same(compileDirection({ isolated: true, rules: [] }).cidrs, [], 'default deny: no entries');
  const emptyPorts = compileDirection({ isolated: true, rules: [{ peers: null, ports: [], sources: [] }] });
  t.same(emptyPorts.cidrs, [], '`ports: []` admits nothing');
  // Two rules: one peer with two port sets merge into one union; the same union is one set.
  const merged = compileDirection({
    isolated: true,
    rules: [
      { peers: [ipv4('10.0.0.0/24')], ports: [{ protocol: 'TCP', port: 80, endPort: 80 }], sources: [] },
      { peers: [ipv4('10.0.0.0/24'), ipv4('10.0.1.0/24')], ports: [{ protocol: 'TCP', port: 81, endPort: 81 }, { protocol: 'TCP', port: 80, endPort: 80 }], sources: [] },
    ],
  });
  t.equal(new Set(merged.cidrs.map((e) => e.match.set)).size, 1, 'equal unions share a port set');
  t.same(merged.ports, [{ set: 1, proto: PROTO_NUM.TCP, port: 80, bits: 15 }], '80-81 is one prefix');
  // A pod /32 inside an allowed range with the same ports adds nothing.
  const redundant = compileDirection({ isolated: true, rules: [{ peers: [ipv4('10.0.0.0/16'), ipv4('10.0.0.5/32')], ports: null, sources: [] }] });
  t.equal(redundant.cidrs.length, 1, 'redundant entries are left out');
  t.same(compileDirection(except).digest, c.digest, 'same policy, same digest');
  t.notSame(compileDirection({ isolated: true, rules: [] }).digest, c.digest);
  for (const bad of [
    { peers: [ipv4('10.0.0.0/33')], ports: null },
    { peers: [ipv4('10.0.0.0/8', ['nope'])], ports: null },
    { peers: null, ports: [{ protocol: 'ICMP', port: 1, endPort: 1 }] },
    { peers: null, ports: [{ protocol: 'TCP', port: 0, endPort: 1 }] },
    { peers: null, ports: [{ protocol: 'TCP', port: 100, endPort: 99 }] },
    { peers: [{ family: 'ipv6', cidr: '::/0', except: [] }], ports: null },
  ]) {
    t.throws(() => compileDirection({ isolated: true, rules: [{ ...bad, sources: [] } as never] }), { code: 'EINVALIDCONFIG' }, JSON.stringify(bad));
  }
});
