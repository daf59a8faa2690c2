// `vnetctl debug policy`: the difference between the computed policy and the
// kernel, from fixtures. ebpf: the map entries the dataplane would write
// (encoded with the real layouts, then decoded as a bpftool dump would be),
// then one entry deleted, changed or added. iptables: the chains and ipsets
// the dataplane would restore, as iptables-save / ipset save print them, then
// one rule deleted, a set member gone, a set gone.
import t from 'tap';
import { compileDirection } from '../../control/dataplane/ebpf/policy.js';
import {
  POL_F, encodePolCidrKey, encodePolEp, encodePolEpKey, encodePolIdKey, encodePolIdVal, encodePolMatch, encodePolPortKey, encodePolPortVal,
} from '../../control/dataplane/ebpf/layouts.js';
import { FORWARD_CHAIN, POLICY_JUMP_SPEC } from '../../control/dataplane/iptables/rules.js';
import { parsePolicySave, planPolicyChange, renderEndpoint, type KernelPolicy } from '../../control/dataplane/iptables/policy-rules.js';
import {
  MAX_ISSUES, capIssues, decodeEbpfPolicy, diffEbpfPolicy, diffIptablesPolicy, parseIpsetSave, type ExpectedEndpoint,
} from '../../control/debug/views/policy-diff.js';
import { renderPolicy } from '../../control/debug/views/policy.js';
import type { EndpointPolicy } from '../../control/policy/types.js';

const WEB: EndpointPolicy = {
  family: 'ipv4',
  address: '10.0.0.5',
  pod: 'shop/web',
  ingress: {
    isolated: true,
    rules: [{ peers: [{ family: 'ipv4', cidr: '10.0.0.0/24', except: ['10.0.0.128/25'] }], ports: [{ protocol: 'TCP', port: 80, endPort: 81 }], sources: ['shop/a'] }],
  },
  egress: { isolated: false, rules: [] },
};
const DB: EndpointPolicy = { family: 'ipv4', address: '10.0.0.6', pod: 'shop/db', ingress: { isolated: true, rules: [] }, egress: { isolated: true, rules: [] } };
const EXPECTED: ExpectedEndpoint[] = [
  { address: WEB.address, hostVeth: 'vethweb', policy: WEB },
  { address: DB.address, hostVeth: 'vethdb', policy: DB },
];

// ---- ebpf ----

interface Raw { key: Buffer; value?: Buffer }
function ebpfMaps(): { eps: Raw[]; ids: Raw[]; cidrs: Raw[]; ports: Raw[] } {
  const out = { eps: [] as Raw[], ids: [] as Raw[], cidrs: [] as Raw[], ports: [] as Raw[] };
  const byDigest = new Map<string, number>();
  const idOf = (dir: EndpointPolicy['ingress']): number => {
    if (!dir.isolated) return 0;
    const c = compileDirection(dir);
    const hex = c.digest.toString('hex');
    if (byDigest.has(hex)) return byDigest.get(hex)!;
    const id = 100 + byDigest.size;
    byDigest.set(hex, id);
    out.ids.push({ key: encodePolIdKey(id), value: encodePolIdVal(c.digest) });
    for (const e of c.cidrs) out.cidrs.push({ key: encodePolCidrKey(id, e.cidr), value: encodePolMatch(e.match) });
    for (const p of c.ports) out.ports.push({ key: encodePolPortKey({ id, ...p }), value: encodePolPortVal() });
    return id;
  };
  for (const p of [WEB, DB]) {
    const flags = (p.ingress.isolated ? POL_F.INGRESS_ISOLATED : 0) | (p.egress.isolated ? POL_F.EGRESS_ISOLATED : 0);
    out.eps.push({ key: encodePolEpKey(p.address), value: encodePolEp({ ingressId: idOf(p.ingress), egressId: idOf(p.egress), flags }) });
  }
  return out;
}

t.test('ebpf: a kernel that holds what was computed shows no difference, with or without a daemon', async (t) => {
  const k = decodeEbpfPolicy(ebpfMaps());
  t.same(diffEbpfPolicy(EXPECTED, k), []);
  t.same(diffEbpfPolicy(undefined, k), []);
  // Web's ingress: 10.0.0.0/24 -> set 1, 10.0.0.128/25 -> no port; ports 80/15 (80-81) of TCP.
  t.same([...k.cidrs.get(100)!], [['10.0.0.0/24', 'port set 1'], ['10.0.0.128/25', 'no port']]);
  t.same([...k.ports.get(100)!], ['set 1 proto 6 port 80/15']);
});

t.test('ebpf: missing, different and extra entries, empty and unused ids, missing endpoints', async (t) => {
  const raw = ebpfMaps();
  const dropped = raw.cidrs.splice(1, 1)[0]!; // 10.0.0.128/25 of web's ingress
  t.match(diffEbpfPolicy(EXPECTED, decodeEbpfPolicy(raw)), [{ endpoint: '10.0.0.5', kind: 'missing', detail: 'ingress id 100: peer entry 10.0.0.128/25 -> no port missing' }]);
  raw.cidrs.push({ key: dropped.key, value: encodePolMatch({ set: 0, flags: 1 }) });
  t.match(diffEbpfPolicy(EXPECTED, decodeEbpfPolicy(raw)), [{ kind: 'different', detail: 'ingress id 100: peer entry 10.0.0.128/25 is any port, expected no port' }]);
  raw.cidrs.pop();
  raw.cidrs.push(dropped);
  raw.ports.push({ key: encodePolPortKey({ id: 100, set: 1, proto: 17, port: 53, bits: 16 }), value: encodePolPortVal() });
  t.match(diffEbpfPolicy(EXPECTED, decodeEbpfPolicy(raw)), [{ endpoint: '10.0.0.5', kind: 'extra', detail: 'ingress id 100: unexpected port entry set 1 proto 17 port 53/16' }]);

  // Every entry of web's id gone: the direction points at an empty id.
  const empty = ebpfMaps();
  empty.cidrs = [];
  empty.ports = [];
  t.match(diffEbpfPolicy(EXPECTED, decodeEbpfPolicy(empty)), [{ endpoint: '10.0.0.5', kind: 'empty-id', detail: /ingress points at policy id 100, which has no entries \(2 peer and 1 port entries expected\)/ }]);

  // An id nobody uses, an unregistered id, an endpoint the kernel lacks, one it has in excess.
  const odd = ebpfMaps();
  odd.ids.push({ key: encodePolIdKey(7), value: Buffer.alloc(16) });
  odd.eps = odd.eps.filter((e) => !e.key.equals(encodePolEpKey(DB.address)));
  odd.eps.push({ key: encodePolEpKey('10.0.0.9'), value: encodePolEp({ ingressId: 55, egressId: 0, flags: POL_F.INGRESS_ISOLATED }) });
  const issues = diffEbpfPolicy(EXPECTED, decodeEbpfPolicy(odd));
  t.match(issues, [
    { endpoint: '10.0.0.9', kind: 'extra', detail: 'the kernel isolates this address but the control plane has no endpoint with it' },
    { endpoint: '10.0.0.6', kind: 'missing', detail: 'no vnet_pol_eps entry: ingress and egress should be isolated but the kernel allows everything' },
    { endpoint: '-', kind: 'unused-id', detail: 'policy id 7 (registered, 0 entries) is used by no endpoint' },
    { endpoint: '-', kind: 'unused-id', detail: 'policy id 101 (registered, 0 entries) is used by no endpoint' },
  ]);
  t.equal(issues.length, 4);
  // Without a daemon: only what the kernel says about itself.
  t.same(diffEbpfPolicy(undefined, decodeEbpfPolicy(odd)).map((i) => `${i.endpoint} ${i.kind}`), ['10.0.0.9 unregistered-id', '- unused-id', '- unused-id']);
});

t.test('ebpf: an isolation flag that differs', async (t) => {
  const raw = ebpfMaps();
  raw.eps[0] = { key: encodePolEpKey(WEB.address), value: encodePolEp({ ingressId: 0, egressId: 0, flags: POL_F.EGRESS_ISOLATED }) };
  const issues = diffEbpfPolicy(EXPECTED, decodeEbpfPolicy(raw));
  t.match(issues, [
    { endpoint: '10.0.0.5', kind: 'different', detail: 'ingress: the kernel has it open, the control plane computed it isolated' },
    { endpoint: '10.0.0.5', kind: 'different', detail: 'egress: the kernel has it isolated, the control plane computed it open' },
    { endpoint: '-', kind: 'unused-id', detail: 'policy id 100 (registered, 3 entries) is used by no endpoint' },
  ]);
});

// ---- iptables ----

function saved(): { save: string; ipset: string } {
  const plan = planPolicyChange(parsePolicySave(''), EXPECTED.map((e) => ({ hostVeth: e.hostVeth!, policy: e.policy })), new Set());
  const body = plan.iptablesRestore.split('\n').filter((l) => l.startsWith(':') || l.startsWith('-A '));
  const save = ['*filter', `:${FORWARD_CHAIN} - [0:0]`, ...body.filter((l) => l.startsWith(':')), `-A ${FORWARD_CHAIN} ${POLICY_JUMP_SPEC}`, ...body.filter((l) => l.startsWith('-A ')), 'COMMIT', ''].join('\n');
  const sets = renderEndpoint('vethweb', WEB).sets;
  // As ipset save prints them: a /32 without its length, nomatch after the member.
  const ipset = sets.flatMap((s) => [`create ${s.name} hash:net family inet hashsize 64 maxelem 1048576 bucketsize 12 initval 0x1`, ...s.entries.map((e) => `add ${s.name} ${e.cidr.replace(/\/32$/, '')}${e.nomatch ? ' nomatch' : ''}`)]).join('\n');
  return { save, ipset: `create KUBE-OTHER hash:ip family inet\n${ipset}\n` };
}

const kernelOf = (save: string): KernelPolicy => parsePolicySave(save);

t.test('iptables: chains and sets as computed show no difference', async (t) => {
  const { save, ipset } = saved();
  const sets = parseIpsetSave(ipset);
  t.same([...sets.keys()].length, 1, 'only our sets');
  t.same(diffIptablesPolicy(EXPECTED, kernelOf(save), sets), []);
  t.same(diffIptablesPolicy(undefined, kernelOf(save), sets), []);
});

t.test('iptables: a rule deleted, reordered or added; a chain gone; set members and sets', async (t) => {
  const { save, ipset } = saved();
  const sets = parseIpsetSave(ipset);
  const lines = save.split('\n');
  const accept = lines.find((l) => l.startsWith('-A VNET-POLI-vethweb') && l.includes('RETURN'))!;
  const noAccept = lines.filter((l) => l !== accept).join('\n');
  t.same(diffIptablesPolicy(EXPECTED, kernelOf(noAccept), sets), [{ endpoint: '10.0.0.5', kind: 'missing', detail: `VNET-POLI-vethweb: missing ${accept}` }]);

  const drop = lines.find((l) => l.startsWith('-A VNET-POLI-vethweb') && l.includes('DROP'))!;
  const swapped = lines.map((l) => (l === accept ? drop : l === drop ? accept : l)).join('\n');
  t.match(diffIptablesPolicy(EXPECTED, kernelOf(swapped), sets), [{ endpoint: '10.0.0.5', kind: 'different', detail: /VNET-POLI-vethweb: the same rules in a different order/ }]);

  const extra = save.replace(drop, `-A VNET-POLI-vethweb -p udp -j RETURN\n${drop}`);
  t.same(diffIptablesPolicy(EXPECTED, kernelOf(extra), sets), [{ endpoint: '10.0.0.5', kind: 'extra', detail: 'VNET-POLI-vethweb: unexpected -A VNET-POLI-vethweb -p udp -j RETURN' }]);

  const noDbEgress = lines.filter((l) => !l.includes('VNET-POLE-vethdb')).join('\n');
  const issues = diffIptablesPolicy(EXPECTED, kernelOf(noDbEgress), sets);
  t.match(issues.map((i) => `${i.endpoint} ${i.kind}`), ['10.0.0.6 missing', '10.0.0.6 missing'], 'its one dispatch line (mode bridge: physdev) and its chain');
  t.match(issues[1]!.detail, 'chain VNET-POLE-vethdb (egress) missing');

  const set = [...sets.keys()][0]!;
  const fewer = parseIpsetSave(ipset.split('\n').filter((l) => !l.endsWith('10.0.0.128/25 nomatch')).join('\n'));
  t.same(diffIptablesPolicy(EXPECTED, kernelOf(save), fewer), [{ endpoint: '-', kind: 'set-members', detail: `ipset ${set}: missing 10.0.0.128/25 nomatch` }]);
  const issuesNoSet = diffIptablesPolicy(EXPECTED, kernelOf(save), new Map());
  t.same(issuesNoSet.map((i) => `${i.endpoint} ${i.kind}`), ['10.0.0.5 missing-set', '- missing-set']);
  t.same(diffIptablesPolicy(undefined, kernelOf(save), new Map()).map((i) => `${i.endpoint} ${i.kind}`), ['10.0.0.5 missing-set'], 'without a daemon: a set a chain matches but does not exist');

  const noJump = save.replace(`-A ${FORWARD_CHAIN} ${POLICY_JUMP_SPEC}\n`, '');
  t.match(diffIptablesPolicy(EXPECTED, kernelOf(noJump), sets), [{ endpoint: '-', kind: 'missing', detail: /no jump to the policy chains/ }]);

  // Chains of a veth the control plane does not know.
  const stray = save.replace('COMMIT', ':VNET-POLI-vethold - [0:0]\n-A VNET-POLI-vethold -j DROP\nCOMMIT');
  t.same(diffIptablesPolicy(EXPECTED, kernelOf(stray), sets), [{ endpoint: 'vethold', kind: 'extra', detail: 'policy chains for vethold, which no endpoint of the control plane uses' }]);
});

t.test('the rendered view: bounded, and says what was compared', async (t) => {
  const many = Array.from({ length: MAX_ISSUES + 5 }, (_, i) => ({ endpoint: '-', kind: 'unused-id' as const, detail: `policy id ${i}` }));
  const k = capIssues('ebpf', false, many);
  t.equal(k.issues.length, MAX_ISSUES);
  const text = renderPolicy({ enabled: false, why: 'no daemon answered', kernel: k });
  t.match(text, /^policy: off \(no daemon answered\)\nkernel \(ebpf\): no daemon: only the kernel's own consistency checked\ndifferences \(205\):\n {2}! - unused-id: policy id 0\n/);
  t.match(text, / {2}\.\.\. 5 more\n$/);
  t.match(renderPolicy({ enabled: false, why: 'x', kernel: capIssues('iptables', true, []) }), /kernel \(iptables\): compared with the computed policy\ndifferences: none\n$/);
  t.match(renderPolicy({ enabled: false, why: 'x', kernel: { ...capIssues('ebpf', true, []), unavailable: 'bpftool: not found' } }), /kernel \(ebpf\): unavailable: bpftool: not found\n$/);
});
