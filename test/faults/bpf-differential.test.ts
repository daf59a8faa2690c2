// Differential packet fuzzing: generated and malformed frames through the
// three tc programs (BPF_PROG_TEST_RUN in a throwaway netns, via the addon),
// each compared with the TS reference model (test/faults/model): verdict,
// counter reasons, and the output frame byte for byte. The model keeps its
// own NAT/inbound state, and at the end it must equal the kernel maps.
import t, { type Test } from 'tap';
import { openFixture, POD1, POD2, PRIMARY, type Fixture } from '../bpf/helpers/fixture.js';
import { unavailableReason } from '../bpf/helpers/env.js';
import { DataplaneModel, VERDICT, type ModelPolicy, type Prediction } from './model/dataplane.js';
import { randomDirection } from './model/policy.js';
import { csumEquivalent, ipNum, parse, PROTO } from './model/packet.js';
import { PacketGenerator, type GenPacket } from './helpers/packet-gen.js';
import { FaultTally } from './helpers/report.js';
import { Rng, scaled, seedFromEnv } from './helpers/scale.js';

const skip = unavailableReason() ?? false;
const PACKETS = scaled(30_000, 150_000);
/** Random NetworkPolicies for both pods, replaced this often (the update path is under test too). */
const POLICY_EVERY = 400;
const NAT_RANGE = { min: 61000, max: 61007 };
const tally = new FaultTally('bpf-differential');

/** Compare outputs, treating the two encodings of a one's-complement zero checksum as equal. */
function framesMatch(expected: Buffer, actual: Buffer): boolean {
  if (expected.length !== actual.length) return false;
  if (expected.equals(actual)) return true;
  const p = parse(expected);
  const csumOffsets = new Set<number>([24]);
  if (p.result === 'ok' && p.proto !== PROTO.UDP) csumOffsets.add(p.l4Off + (p.proto === PROTO.TCP ? 16 : 2));
  for (let i = 0; i < expected.length; i++) {
    if (expected[i] === actual[i]) continue;
    const off = csumOffsets.has(i) ? i : csumOffsets.has(i - 1) ? i - 1 : -1;
    if (off < 0 || !csumEquivalent(expected.readUInt16BE(off), actual.readUInt16BE(off))) return false;
  }
  return true;
}

function natPortOf(frame: Buffer): number | undefined {
  const p = parse(frame);
  if (p.result !== 'ok' || !p.hasL4) return undefined;
  return p.sport;
}

interface Mismatch {
  pkt: GenPacket;
  expected: Prediction;
  actual: { retval: number; reasons: string[]; data: string };
}

/** Runs one fuzz pass; resolves with how often a SYN restarted a closed pair (asserted over the policy-free passes together). */
async function fuzz(t: Test, fastPathExternal: boolean, rng: Rng, count: number, withPolicy = false): Promise<number> {
  const f: Fixture = await openFixture(t, `fuzz-${fastPathExternal ? 'fp' : 'st'}${withPolicy ? '-pol' : ''}`, {
    natPortRange: NAT_RANGE,
    stackCidrs: ['10.96.0.0/12'],
    fastPathExternal,
    // The model has no clock: closed pairs and flow records must not expire during the run.
    timeouts: { tcpFinMs: 3_600_000, tcpRstMs: 3_600_000, udpMs: 3_600_000, icmpMs: 3_600_000 },
  });
  const model = new DataplaneModel({
    primaryIp: ipNum(PRIMARY),
    noSnat: [[ipNum('10.240.0.0'), 16], [ipNum('172.16.0.0'), 12], [ipNum('168.63.129.16'), 32]],
    stack: [[ipNum('10.96.0.0'), 12]],
    fastPathExternal,
    natPortMin: NAT_RANGE.min,
    natPortMax: NAT_RANGE.max,
  });
  for (const ep of [POD1, POD2]) model.endpoints.set(ipNum(ep.ip), { ...ep, ip: ipNum(ep.ip) });
  const gen = new PacketGenerator(rng, withPolicy);
  const mismatches: Mismatch[] = [];
  const seen = new Map<string, number>();
  f.delta();
  const deadline = Date.now() + 20 * 60_000; // a bound, not an assertion
  let ran = 0;
  let policyRounds = 0;
  for (; ran < count && Date.now() < deadline; ran++) {
    if (withPolicy && ran % POLICY_EVERY === 0) {
      const updates = [POD1, POD2].map((ep) => {
        // Now and then no policy at all (the entry is deleted), else random directions (possibly both open).
        const pol: ModelPolicy | null = rng.chance(0.15) ? null : { ingress: randomDirection(rng), egress: randomDirection(rng) };
        if (pol) model.policies.set(ipNum(ep.ip), pol);
        else model.policies.delete(ipNum(ep.ip));
        return { ip: ep.ip, policy: pol && { family: 'ipv4' as const, address: ep.ip, ...pol } };
      });
      await f.dp.setPolicies(updates);
      policyRounds++;
    }
    const pkt = gen.next();
    const r = await f.run(f.progs[pkt.prog], pkt.frame, pkt.ingressIfindex);
    const reasons = Object.entries(f.delta()).flatMap(([k, n]) => Array<string>(n).fill(k)).sort();
    const expected = model.run(pkt.prog, pkt.frame, pkt.ingressIfindex, () => (r.retval === VERDICT.OK ? natPortOf(r.data) ?? 'exhausted' : 'exhausted'));
    const ok =
      r.retval === expected.verdict &&
      JSON.stringify(reasons) === JSON.stringify([...expected.reasons].sort()) &&
      (expected.data === null || framesMatch(expected.data, r.data));
    for (const reason of expected.reasons.length ? expected.reasons : ['untouched']) seen.set(reason, (seen.get(reason) ?? 0) + 1);
    tally.add('bpf', `${pkt.prog}: ${pkt.kind.split('+').filter((k) => !['outbound', 'inbound', 'flow-repeat'].includes(k)).join('+') || 'well-formed'}`, ok ? `model agrees` : 'MISMATCH');
    if (!ok && mismatches.length < 10) mismatches.push({ pkt, expected, actual: { retval: r.retval, reasons, data: r.data.toString('hex') } });
    else if (!ok) mismatches.push({ pkt, expected, actual: { retval: r.retval, reasons, data: '' } });
  }
  t.ok(ran > count / 2, `${ran} packets run (bounded by count and time)`);
  t.equal(mismatches.length, 0, `kernel and model agree on all ${ran} packets (seed ${rng.seed})`);
  for (const m of mismatches.slice(0, 5)) {
    t.comment(JSON.stringify({ prog: m.pkt.prog, kind: m.pkt.kind, ingress: m.pkt.ingressIfindex, frame: m.pkt.frame.toString('hex'), expected: { ...m.expected, data: m.expected.data?.toString('hex') }, actual: m.actual }));
  }
  // The fuzzer must have reached every branch that matters, or a pass proves little.
  const mustSee = [
    'forwarded-local', 'forwarded-from-nic', 'snat-new', 'snat-hit', 'rev-snat', 'pass-to-stack', 'pass-inbound-reply',
    'pass-untracked', 'pass-fragment', 'pass-ip-options', 'drop-malformed', 'drop-spoofed-source',
    'drop-fragment-needs-nat', 'untouched',
    // Policy drops thin out the SNAT traffic: port exhaustion is the policy-free runs' to reach.
    ...(withPolicy
      ? ['policy-allow', 'policy-established', 'policy-allow-host', 'drop-policy-ingress', 'drop-policy-egress', 'policy-related-icmp', 'policy-related-fragment']
      : ['drop-nat-port-exhausted']),
  ];
  t.same(mustSee.filter((r) => !seen.has(r)), [], `every branch exercised: ${JSON.stringify(Object.fromEntries(seen))}`);

  // End state: the kernel's NAT and inbound maps hold exactly the model's flows.
  const nat = await f.dp.natEntries();
  const kernelFwd = new Set(nat.map((e) => `${e.pod.ip}:${e.pod.port}>${e.remote.ip}:${e.remote.port}/${e.proto}@${e.nat.port}~${e.closeFlags}`));
  const modelFwd = new Set(
    [...model.snatFwd.entries()].map(([k, port]) => {
      const [s, d, sp, dp, pr] = k.split('|').map(Number) as [number, number, number, number, number];
      const proto = pr === PROTO.TCP ? 'tcp' : pr === PROTO.UDP ? 'udp' : 'icmp';
      const ip = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
      return `${ip(s)}:${sp}>${ip(d)}:${dp}/${proto}@${port}~${model.closeFlags.get(k) ?? 0}`;
    }),
  );
  t.same([...kernelFwd].sort(), [...modelFwd].sort(), `NAT maps equal the model, close flags included (${modelFwd.size} mappings)`);
  const closedPairs = [...model.closeFlags.values()].filter((v) => v !== 0).length;
  t.ok(closedPairs > 0, `close tracking exercised: ${closedPairs} mappings with FIN/RST bits at the end`);
  t.equal((await f.dp.inboundFlows()).length, model.inbound.size, 'inbound flow records equal the model');
  const kernelPolFlows = (await f.dp.policyFlows()).map(
    (fl) => `${fl.kind === 'fragment' ? 'F|' : ''}${ipNum(fl.local.ip)}|${ipNum(fl.remote.ip)}|${fl.local.port}|${fl.remote.port}|${fl.proto === 'tcp' ? 6 : fl.proto === 'udp' ? 17 : fl.proto === 'icmp' ? 1 : Number(fl.proto.slice(6))}`,
  );
  t.same(kernelPolFlows.sort(), [...model.polFlows].sort(), `policy flow records equal the model (${model.polFlows.size}, ${policyRounds} policy rounds)`);
  const state = await f.dp.policyState();
  t.ok(state.ids.length <= 4, `no policy ids leaked across ${policyRounds} updates (${state.ids.length} live)`);
  return model.synRestarts;
}

t.test('BPF programs vs the reference model, generated and malformed packets', { skip, timeout: 1_800_000 }, async (t) => {
  const seed = seedFromEnv();
  t.comment(`seed ${seed} (replay with VNET_FAULTS_SEED=${seed}), ${PACKETS} packets`);
  const rng = new Rng(seed);
  let restarts = 0;
  await t.test('stack path (default)', async (t) => void (restarts += await fuzz(t, false, rng, Math.ceil(PACKETS / 3))));
  await t.test('fastPathExternal', async (t) => void (restarts += await fuzz(t, true, rng, Math.floor(PACKETS / 3))));
  // One pass can miss a restart on some seeds (seed 10: none in fastPathExternal); the two together reach it.
  // Policy drops thin out the SNAT traffic: restarts are the policy-free passes' to prove.
  t.ok(restarts > 0, `a SYN on a closed pair started over ${restarts} times in the policy-free passes`);
  await t.test('NetworkPolicy (random policies on both pods, fastPathExternal, to_pod too)', (t) => fuzz(t, true, rng, Math.floor(PACKETS / 3), true));
  tally.flush({ seed, packets: PACKETS });
});
