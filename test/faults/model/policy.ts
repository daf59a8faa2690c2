// NetworkPolicy for the differential model: random compiled policies over the
// fuzzer's address and port pools (so rules, excepts and ranges are actually
// hit), and the verdict stated directly from the compiled form's meaning
// (control/policy/types.ts): a new flow is allowed if some rule's peers contain
// the remote address (cidr minus excepts) and its ports contain the protocol
// and destination port. Independent of the LPM encoding the loader writes.
import type { CompiledRule, DirectionPolicy, L4Protocol, PortRange } from '../../../control/policy/types.js';
import { ipNum } from './packet.js';
import type { Rng } from '../helpers/scale.js';

/** Prefixes around the fuzzer's addresses: pods .5/.6, primary .4, VNet host .20, .9, internet, peered, wireserver, service. */
const CIDRS = [
  '0.0.0.0/0', '10.0.0.0/8', '10.240.0.0/16', '10.240.0.0/24', '10.240.0.0/28', '10.240.0.4/30', '10.240.0.5/32', '10.240.0.6/32',
  '10.240.0.9/32', '10.240.0.16/28', '10.240.0.20/32', '10.96.0.0/12', '172.16.0.0/12', '172.16.1.0/24', '203.0.113.0/24',
  '203.0.113.10/32', '198.51.100.0/24', '168.63.129.16/32', '224.0.0.0/4',
];
const PORTS: Array<[number, number]> = [
  [53, 53], [80, 80], [443, 443], [1000, 1000], [5000, 5000], [12000, 12000], [50, 100], [400, 500], [1000, 4000], [2000, 12000],
  [1, 65535], [30000, 30318], [25972, 25972],
];
const PROTOCOLS: L4Protocol[] = ['TCP', 'TCP', 'UDP', 'UDP', 'SCTP'];

function parsed(cidr: string): [number, number] {
  const [ip, len] = cidr.split('/');
  return [ipNum(ip!), Number(len)];
}
const mask = (len: number): number => (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0);
export function cidrContains(cidr: string, addr: number): boolean {
  const [net, len] = parsed(cidr);
  return ((addr & mask(len)) >>> 0) === net;
}
function cidrInside(inner: string, outer: string): boolean {
  const [net, len] = parsed(inner);
  return len >= parsed(outer)[1] && cidrContains(outer, net);
}

function randomRule(rng: Rng): CompiledRule {
  let peers: CompiledRule['peers'] = null;
  if (!rng.chance(0.2)) {
    peers = [];
    for (let i = rng.range(1, 3); i > 0; i--) {
      const cidr = rng.pick(CIDRS);
      const inside = CIDRS.filter((c) => c !== cidr && cidrInside(c, cidr));
      const except = inside.length && rng.chance(0.4) ? [...new Set([rng.pick(inside), ...(rng.chance(0.3) ? [rng.pick(inside)] : [])])] : [];
      peers.push({ family: 'ipv4', cidr, except });
    }
  }
  let ports: PortRange[] | null = null;
  if (!rng.chance(0.25)) {
    ports = [];
    for (let i = rng.range(1, 3); i > 0; i--) {
      const [port, endPort] = rng.pick(PORTS);
      ports.push({ protocol: rng.pick(PROTOCOLS), port, endPort });
    }
  }
  return { peers, ports, sources: ['fuzz/policy'] };
}

export function randomDirection(rng: Rng): DirectionPolicy {
  if (rng.chance(0.35)) return { isolated: false, rules: [] };
  const rules: CompiledRule[] = [];
  for (let i = rng.int(5); i > 0; i--) rules.push(randomRule(rng));
  return { isolated: true, rules };
}

const PROTO_NUM: Record<L4Protocol, number> = { TCP: 6, UDP: 17, SCTP: 132 };

/** Does an isolated direction's rule set admit a new flow? port null: the packet carries none. */
export function rulesAllow(dir: DirectionPolicy, remote: number, proto: number, port: number | null): boolean {
  return dir.rules.some(
    (r) =>
      (r.peers === null || r.peers.some((p) => cidrContains(p.cidr, remote) && !p.except.some((e) => cidrContains(e, remote)))) &&
      (r.ports === null || (port !== null && r.ports.some((pr) => PROTO_NUM[pr.protocol] === proto && port >= pr.port && port <= pr.endPort))),
  );
}
