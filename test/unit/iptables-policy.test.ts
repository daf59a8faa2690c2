// The iptables dataplane's NetworkPolicy text: compiled EndpointPolicy
// fixtures in, ipset restore / iptables-restore input out, and the plan of
// one change computed from an iptables-save of the state before it.
import t from 'tap';
import {
  chainsToRead, changeTouches, parseChainListings, parsePolicyDrops, parsePolicySave, peerSets, planPolicyChange, renderEndpoint,
  renderPolicyTeardown, renderSetDestroy, type KernelPolicy,
} from '../../control/dataplane/iptables/policy-rules.js';
import { renderIptablesRestore } from '../../control/dataplane/iptables/rules.js';
import type { NodeNetwork } from '../../control/dataplane/types.js';
import type { CompiledRule, EndpointPolicy, PeerCidr, PortRange } from '../../control/policy/types.js';

const peer = (cidr: string, except: string[] = []): PeerCidr => ({ family: 'ipv4', cidr, except });
const tcp = (port: number, endPort = port): PortRange => ({ protocol: 'TCP', port, endPort });
const udp = (port: number, endPort = port): PortRange => ({ protocol: 'UDP', port, endPort });
const rule = (peers: PeerCidr[] | null, ports: PortRange[] | null): CompiledRule => ({ peers, ports, sources: ['default/p'] });
const open = { isolated: false, rules: [] };
const deny = { isolated: true, rules: [] };

function policy(address: string, ingress: EndpointPolicy['ingress'], egress: EndpointPolicy['egress'] = open): EndpointPolicy {
  return { family: 'ipv4', address, pod: 'default/a', ingress, egress };
}

/** What iptables-save prints for the chains a plan's restore declares (counters left out). */
function savedAfter(restore: string, base = ''): string {
  const chains = new Map<string, string[]>();
  const order: string[] = [];
  const apply = (text: string) => {
    for (const line of text.split('\n')) {
      const d = /^:(\S+) /.exec(line);
      if (d) {
        if (!chains.has(d[1]!)) order.push(d[1]!);
        chains.set(d[1]!, []);
      }
      const a = /^-A (\S+) /.exec(line);
      if (a) chains.get(a[1]!)!.push(line);
      const i = /^-I (\S+) 1 (.*)$/.exec(line);
      if (i) chains.get(i[1]!)!.unshift(`-A ${i[1]} ${i[2]}`);
      const del = /^-D (\S+) (.*)$/.exec(line);
      if (del) {
        const lines = chains.get(del[1]!)!;
        const at = lines.indexOf(`-A ${del[1]} ${del[2]}`);
        if (at < 0) throw new Error(`iptables-restore would fail: ${line} matches no rule`);
        lines.splice(at, 1);
      }
      const x = /^-X (\S+)$/.exec(line);
      if (x) {
        chains.delete(x[1]!);
        order.splice(order.indexOf(x[1]!), 1);
      }
    }
  };
  apply(base);
  apply(restore);
  return ['*filter', ...order.map((c) => `:${c} - [0:0]`), ...order.flatMap((c) => chains.get(c)!), 'COMMIT', ''].join('\n');
}

const node: NodeNetwork = {
  nic: 'eth0', nicMac: '00:0d:3a:f0:00:04', primaryIp: '10.240.0.4', prefixLength: 16, subnet: '10.240.0.0/16', gateway: '10.240.0.1',
  noSnatCidrs: ['10.240.0.0/16'], mtu: 1500, bridge: 'azure0', bpfRoot: '/sys/fs/bpf/vnet-cni/vm1',
};
/** The filter table as ensureNode leaves it (VNET-POL-FWD created empty). */
const NODE_SAVE = `*filter
:VNET-FORWARD - [0:0]
:VNET-POL-FWD - [0:0]
-A VNET-FORWARD -m comment --comment "vnet-cni: policy" -j VNET-POL-FWD
-A VNET-FORWARD -i azure0 -m comment --comment "vnet-cni: pod traffic" -j ACCEPT
-A VNET-FORWARD -o azure0 -m comment --comment "vnet-cni: pod traffic" -j ACCEPT
COMMIT
`;

t.test('default deny ingress: one chain that drops, dispatched by the pod address', async (t) => {
  const r = renderEndpoint('azv0123456789ab', policy('10.240.1.4', deny));
  t.same(r.chains, [{
    name: 'VNET-POLI-azv0123456789ab',
    direction: 'ingress',
    lines: ['-A VNET-POLI-azv0123456789ab -m comment --comment "vnet-cni: default/a ingress not allowed by policy" -j DROP'],
  }]);
  t.same(r.dispatch, ['-A VNET-POL-FWD -d 10.240.1.4/32 -m comment --comment "vnet-cni: default/a ingress" -j VNET-POLI-azv0123456789ab']);
  t.same(r.sets, []);
});

t.test('egress is dispatched by the bridge port, rules match peers x ports, in iptables-save order', async (t) => {
  const r = renderEndpoint('azvb', policy('10.240.1.5', open, { isolated: true, rules: [rule([peer('10.240.2.0/24')], [tcp(80), udp(53), tcp(8000, 8100)]), rule(null, null)] }));
  const set = r.sets[0]!.name;
  t.match(set, /^VNET-P4-[0-9a-f]{16}$/, 'a content-addressed set with the family in its name');
  t.same(r.chains[0]!.lines, [
    `-A VNET-POLE-azvb -p tcp -m set --match-set ${set} dst -m multiport --dports 80,8000:8100 -j RETURN`,
    `-A VNET-POLE-azvb -p udp -m set --match-set ${set} dst -m multiport --dports 53 -j RETURN`,
    '-A VNET-POLE-azvb -j RETURN',
    '-A VNET-POLE-azvb -m comment --comment "vnet-cni: default/a egress not allowed by policy" -j DROP',
  ]);
  t.same(r.dispatch, [
    '-A VNET-POL-FWD -m physdev --physdev-in azvb -m comment --comment "vnet-cni: default/a egress" -j VNET-POLE-azvb',
  ]);
  const ingress = renderEndpoint('azvb', policy('10.240.1.5', { isolated: true, rules: [rule([peer('10.240.2.0/24')], null)] }));
  t.same(ingress.chains[0]!.lines[0], `-A VNET-POLI-azvb -m set --match-set ${set} src -j RETURN`, 'ingress matches the remote as the source; ports null = any protocol');
});

t.test('ports: merged, SCTP, chunks of 15 multiport slots, empty lists match nothing', async (t) => {
  const many = Array.from({ length: 20 }, (_, i) => tcp(1000 + 2 * i));
  const r = renderEndpoint('azvc', policy('10.240.1.6', { isolated: true, rules: [rule(null, [...many, tcp(5000, 5010), tcp(5005, 5020), tcp(5021), { protocol: 'SCTP', port: 9, endPort: 9 }])] }));
  const lines = r.chains[0]!.lines;
  t.same(lines.slice(0, -1), [
    '-A VNET-POLI-azvc -p tcp -m multiport --dports 1000,1002,1004,1006,1008,1010,1012,1014,1016,1018,1020,1022,1024,1026,1028 -j RETURN',
    '-A VNET-POLI-azvc -p tcp -m multiport --dports 1030,1032,1034,1036,1038,5000:5021 -j RETURN',
    '-A VNET-POLI-azvc -p sctp -m multiport --dports 9 -j RETURN',
  ]);
  const none = renderEndpoint('azvc', policy('10.240.1.6', { isolated: true, rules: [rule([], null), rule(null, [])] }));
  t.equal(none.chains[0]!.lines.length, 1, 'no peers or no ports: the rule adds nothing, only the drop remains');
  t.throws(() => renderEndpoint('azvc', policy('10.240.1.6', { isolated: true, rules: [rule(null, [tcp(0)])] })), /outside 1-65535/);
  t.throws(() => renderEndpoint('azvc', policy('10.240.1.6/24', deny)), /not a single IPv4 address/);
  t.throws(() => renderEndpoint('bad name', policy('10.240.1.6', deny)), /cannot name a policy chain/);
});

t.test('rules with the same ports share one line over the union of their peers', async (t) => {
  const r = renderEndpoint('azvd', policy('10.240.1.7', { isolated: true, rules: [
    rule([peer('10.240.1.4/32')], [tcp(80)]), rule([peer('10.240.1.5/32')], [tcp(80)]), rule([peer('10.240.2.0/24')], [udp(53), tcp(80)]), rule(null, [udp(53), tcp(80)]),
  ] }));
  const set = peerSets([peer('10.240.1.4/32'), peer('10.240.1.5/32')])[0]!.name;
  t.same(r.chains[0]!.lines.slice(0, -1), [
    `-A VNET-POLI-azvd -p tcp -m set --match-set ${set} src -m multiport --dports 80 -j RETURN`,
    '-A VNET-POLI-azvd -p tcp -m multiport --dports 80 -j RETURN',
    '-A VNET-POLI-azvd -p udp -m multiport --dports 53 -j RETURN',
  ], 'two pods on port 80: one set; any peer absorbs the /24 of the same ports');
});

t.test('peer sets: except as nomatch, /0 as two halves, overlaps kept exact', async (t) => {
  const [s] = peerSets([peer('10.0.0.0/8', ['10.1.0.0/16', '10.1.2.0/24', '192.168.0.0/24']), peer('10.240.1.4/32')]);
  t.same(s!.entries, [
    { cidr: '10.0.0.0/8', nomatch: false },
    { cidr: '10.1.0.0/16', nomatch: true },
    { cidr: '10.240.1.4/32', nomatch: false },
  ], 'an except inside another except, or outside the CIDR, is dropped');
  t.same(peerSets([peer('0.0.0.0/0', ['10.240.0.0/16'])])[0]!.entries, [
    { cidr: '0.0.0.0/1', nomatch: false },
    { cidr: '10.240.0.0/16', nomatch: true },
    { cidr: '128.0.0.0/1', nomatch: false },
  ]);
  t.same(peerSets([peer('10.1.0.0/16', ['10.0.0.0/8'])]), [], 'an except covering the whole CIDR leaves nothing');
  // 10.0.0.0/8 except 10.1.0.0/16, plus 10.1.0.0/16 itself: one set would hide 10.1/16 (most specific wins).
  const split = peerSets([peer('10.0.0.0/8', ['10.1.0.0/16']), peer('10.1.0.0/16')]);
  t.equal(split.length, 2, 'a peer containing another peer\'s except goes to its own set');
  // A /32 inside the except is more specific than the nomatch entry: one set is exact.
  t.equal(peerSets([peer('10.0.0.0/8', ['10.1.0.0/16']), peer('10.1.2.3/32')]).length, 1);
  t.equal(peerSets([peer('10.240.1.4/32'), peer('10.240.1.5')])[0]!.name, peerSets([peer('10.240.1.5/32'), peer('10.240.1.4/32')])[0]!.name, 'same content, same set, whatever the order');
  t.not(peerSets([peer('10.240.1.4/32')])[0]!.name, peerSets([peer('10.240.1.5/32')])[0]!.name);
  t.throws(() => peerSets([peer('10.0.0.300/8')]), /not an IPv4 CIDR/);
});

t.test('a new policy: sets filled under a temporary name, chains and dispatch in one restore', async (t) => {
  const kernel = parsePolicySave(NODE_SAVE);
  t.ok(kernel.forwardChain && kernel.jumpFirst && kernel.dispatchChain, 'ensureNode leaves VNET-FORWARD starting with the jump');
  const p = policy('10.240.1.4', { isolated: true, rules: [rule([peer('10.240.0.0/16', ['10.240.1.6/32'])], [tcp(80)])] }, deny);
  const plan = planPolicyChange(kernel, [{ hostVeth: 'azva', policy: p }], new Set(['KUBE-X']));
  const set = renderEndpoint('azva', p).sets[0]!.name;
  t.equal(plan.ipsetRestore, [
    `create ${set}-t hash:net family inet hashsize 64 maxelem 1048576`,
    `flush ${set}-t`,
    `add ${set}-t 10.240.0.0/16`,
    `add ${set}-t 10.240.1.6/32 nomatch`,
    `rename ${set}-t ${set}`,
    '',
  ].join('\n'));
  t.equal(plan.iptablesRestore, [
    '*filter',
    ':VNET-POLE-azva - [0:0]',
    ':VNET-POLI-azva - [0:0]',
    '-I VNET-POL-FWD 1 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "vnet-cni: replies of allowed flows" -j RETURN',
    '-A VNET-POLE-azva -m comment --comment "vnet-cni: default/a egress not allowed by policy" -j DROP',
    `-A VNET-POLI-azva -p tcp -m set --match-set ${set} src -m multiport --dports 80 -j RETURN`,
    '-A VNET-POLI-azva -m comment --comment "vnet-cni: default/a ingress not allowed by policy" -j DROP',
    '-A VNET-POL-FWD -m physdev --physdev-in azva -m comment --comment "vnet-cni: default/a egress" -j VNET-POLE-azva',
    '-A VNET-POL-FWD -d 10.240.1.4/32 -m comment --comment "vnet-cni: default/a ingress" -j VNET-POLI-azva',
    'COMMIT',
    '',
  ].join('\n'), 'VNET-POL-FWD is not redeclared (that would flush every other endpoint): the replies line goes first, the dispatch lines are appended');
  t.same(plan.staleSets, [], 'other tools\' sets are never ours to destroy');

  // Applied: the same policy again is no transaction at all.
  const after = parsePolicySave(savedAfter(plan.iptablesRestore, NODE_SAVE));
  const again = planPolicyChange(after, [{ hostVeth: 'azva', policy: p }], new Set([set]));
  t.same(again, { ipsetRestore: '', iptablesRestore: '', staleSets: [] }, 'idempotent');
});

t.test('an update names only its endpoints: the others keep their lines and sets, old sets go after the swap', async (t) => {
  const pa = policy('10.240.1.4', { isolated: true, rules: [rule([peer('10.240.1.5/32')], null)] });
  const pb = policy('10.240.1.5', { isolated: true, rules: [rule([peer('10.240.1.6/32')], null)] });
  const first = planPolicyChange(parsePolicySave(NODE_SAVE), [{ hostVeth: 'azva', policy: pa }, { hostVeth: 'azvb', policy: pb }], new Set());
  const state1 = savedAfter(first.iptablesRestore, NODE_SAVE);
  const setA = renderEndpoint('azva', pa).sets[0]!.name;
  const setB = renderEndpoint('azvb', pb).sets[0]!.name;

  const pa2 = policy('10.240.1.4', { isolated: true, rules: [rule([peer('10.240.1.5/32'), peer('10.240.1.7/32')], null)] });
  const setA2 = renderEndpoint('azva', pa2).sets[0]!.name;
  const update = planPolicyChange(parsePolicySave(state1), [{ hostVeth: 'azva', policy: pa2 }], new Set([setA, setB, `${setA}-t`]));
  t.match(update.ipsetRestore, new RegExp(`rename ${setA2}-t ${setA2}`));
  t.notMatch(update.iptablesRestore, /:VNET-POLI-azvb/, 'the untouched endpoint\'s chain is not redeclared');
  t.notMatch(update.iptablesRestore, /azvb/, 'nothing of the untouched endpoint is in the restore: its dispatch line stays as it is');
  t.notMatch(update.iptablesRestore, /-[AD] VNET-POL-FWD/, 'the updated endpoint\'s dispatch is unchanged: no dispatch line touched');
  t.same(update.staleSets.sort(), [setA, `${setA}-t`].sort(), 'the replaced set and a crash leftover are destroyed after the swap; B\'s set stays');

  // Unisolated = removal: the chain is flushed and deleted in the same commit, after the dispatch no longer names it.
  const state2 = savedAfter(update.iptablesRestore, state1);
  const removal = planPolicyChange(parsePolicySave(state2), [{ hostVeth: 'azvb', policy: policy('10.240.1.5', open) }], new Set([setA2, setB]));
  const lines = removal.iptablesRestore.split('\n');
  t.ok(lines.includes(':VNET-POLI-azvb - [0:0]') && lines.indexOf('-X VNET-POLI-azvb') > lines.indexOf('-D VNET-POL-FWD -d 10.240.1.5/32 -m comment --comment "vnet-cni: default/a ingress" -j VNET-POLI-azvb'));
  t.notMatch(removal.iptablesRestore, /-A VNET-POL-FWD .*-j VNET-POLI-azvb/);
  t.notMatch(removal.iptablesRestore, /VNET-POLI-azva/, 'the other endpoint is not touched at all');
  t.same(removal.staleSets, [setB]);

  // Detach of an endpoint without policy: nothing to do, without even listing sets.
  const state3 = parsePolicySave(savedAfter(removal.iptablesRestore, state2));
  t.notOk(changeTouches(state3, [{ hostVeth: 'azvz', policy: null }]));
  t.ok(changeTouches(state3, [{ hostVeth: 'azva', policy: null }]));
});

t.test('an address another veth still holds (a crash left it) is taken over whole', async (t) => {
  const old = planPolicyChange(parsePolicySave(NODE_SAVE), [{ hostVeth: 'azvold', policy: policy('10.240.1.4', deny) }], new Set());
  const kernel = parsePolicySave(savedAfter(old.iptablesRestore, NODE_SAVE));
  t.ok(changeTouches(kernel, [{ hostVeth: 'azvnew', policy: policy('10.240.1.4', open) }]), 'even a pod no policy selects clears the stale chains of its address');
  const plan = planPolicyChange(kernel, [{ hostVeth: 'azvnew', policy: policy('10.240.1.4', open) }], new Set());
  t.match(plan.iptablesRestore, /-X VNET-POLI-azvold/);
  t.match(plan.iptablesRestore, /^-D VNET-POL-FWD -d 10\.240\.1\.4\/32 .*-j VNET-POLI-azvold$/m, 'its dispatch line goes');
  t.notMatch(plan.iptablesRestore, /^-[AI] .*-j VNET-POLI-/m, 'and no new one comes');
  t.notMatch(savedAfter(plan.iptablesRestore, savedAfter(old.iptablesRestore, NODE_SAVE)), /VNET-POL[IE]-|conntrack/, 'nothing of the old endpoint is left, nor the replies line');
});

t.test('a missing or misplaced policy jump is repaired in the same commit', async (t) => {
  const moved = NODE_SAVE.replace(/-A VNET-FORWARD -m comment --comment "vnet-cni: policy" -j VNET-POL-FWD\n/, '') + '';
  const k = parsePolicySave(moved.replace('COMMIT', '-A VNET-FORWARD -m comment --comment "vnet-cni: policy" -j VNET-POL-FWD\nCOMMIT'));
  t.ok(k.jumpPresent && !k.jumpFirst);
  const plan = planPolicyChange(k, [{ hostVeth: 'azva', policy: policy('10.240.1.4', deny) }], new Set());
  t.match(plan.iptablesRestore, /-D VNET-FORWARD -m comment --comment "vnet-cni: policy" -j VNET-POL-FWD\n-I VNET-FORWARD 1 -m comment --comment "vnet-cni: policy" -j VNET-POL-FWD/);
});

t.test('iptables-save -c output parses (counters stripped) and teardown removes every policy chain', async (t) => {
  const save = `# Generated by iptables-nft-save v1.8.9 (nf_tables)
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:VNET-FORWARD - [0:0]
:VNET-POL-FWD - [0:0]
:VNET-POLI-azva - [0:0]
[9:756] -A FORWARD -m comment --comment "vnet-cni: forward" -j VNET-FORWARD
[9:756] -A VNET-FORWARD -m comment --comment "vnet-cni: policy" -j VNET-POL-FWD
[7:588] -A VNET-FORWARD -i azure0 -m comment --comment "vnet-cni: pod traffic" -j ACCEPT
[4:336] -A VNET-POL-FWD -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "vnet-cni: replies of allowed flows" -j RETURN
[3:252] -A VNET-POL-FWD -d 10.240.1.4/32 -m comment --comment "vnet-cni: default/a ingress" -j VNET-POLI-azva
[1:84] -A VNET-POLI-azva -p tcp -m set --match-set VNET-P4-0011223344556677 src -m multiport --dports 80 -j RETURN
[2:168] -A VNET-POLI-azva -m comment --comment "vnet-cni: default/a ingress not allowed by policy" -j DROP
COMMIT
*nat
:VNET-POLI-fake - [0:0]
COMMIT
`;
  const k: KernelPolicy = parsePolicySave(save);
  t.same([...k.endpoints.keys()], ['azva'], 'only the filter table counts');
  t.equal(k.endpoints.get('azva')!.address, '10.240.1.4/32');
  t.same(k.endpoints.get('azva')!.chains.get('VNET-POLI-azva')!.length, 2);
  t.same([...k.setRefs.get('VNET-POLI-azva')!], ['VNET-P4-0011223344556677']);
  t.equal(renderPolicyTeardown(k), [
    '*filter', ':VNET-POL-FWD - [0:0]', ':VNET-POLI-azva - [0:0]',
    '-D VNET-FORWARD -m comment --comment "vnet-cni: policy" -j VNET-POL-FWD',
    '-X VNET-POL-FWD', '-X VNET-POLI-azva', 'COMMIT', '',
  ].join('\n'));
  t.equal(renderPolicyTeardown(parsePolicySave('*filter\nCOMMIT\n')), '', 'nothing there: nothing to run');
  t.equal(renderSetDestroy(['VNET-P4-a', 'VNET-P4-b']), 'destroy VNET-P4-a\ndestroy VNET-P4-b\n');
});

t.test('the node chain starts with the policy jump, before the pod traffic ACCEPTs', async (t) => {
  const lines = renderIptablesRestore(node).split('\n');
  const first = lines.findIndex((l) => l.startsWith('-A VNET-FORWARD'));
  t.equal(lines[first], '-A VNET-FORWARD -m comment --comment "vnet-cni: policy" -j VNET-POL-FWD');
  t.notOk(lines.some((l) => l.startsWith(':VNET-POL-FWD')), 'never declared there: that would flush every policy');
});

t.test('the egress dispatch matches the pod\'s shape: the bridge port in mode bridge, the veth when routed', async (t) => {
  const p = policy('10.240.1.4', open, deny);
  t.same(renderEndpoint('azva', p).dispatch, ['-A VNET-POL-FWD -m physdev --physdev-in azva -m comment --comment "vnet-cni: default/a egress" -j VNET-POLE-azva'], 'absent mode = bridge');
  t.same(renderEndpoint('azva', p, 'bridge').dispatch, renderEndpoint('azva', p).dispatch);
  t.same(renderEndpoint('azva', p, 'transparent').dispatch, ['-A VNET-POL-FWD -i azva -m comment --comment "vnet-cni: default/a egress" -j VNET-POLE-azva']);
  // An endpoint programmed before (both lines): the next change of it deletes the line its shape never matches.
  const both = `${NODE_SAVE.replace('COMMIT\n', '')}:VNET-POLE-azva - [0:0]
-A VNET-POL-FWD -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "vnet-cni: replies of allowed flows" -j RETURN
-A VNET-POL-FWD -m physdev --physdev-in azva -m comment --comment "vnet-cni: default/a egress" -j VNET-POLE-azva
-A VNET-POL-FWD -i azva -m comment --comment "vnet-cni: default/a egress" -j VNET-POLE-azva
-A VNET-POLE-azva -m comment --comment "vnet-cni: default/a egress not allowed by policy" -j DROP
COMMIT
`;
  const plan = planPolicyChange(parsePolicySave(both), [{ hostVeth: 'azva', policy: p, mode: 'transparent' }], new Set());
  t.match(plan.iptablesRestore, /^-D VNET-POL-FWD -m physdev --physdev-in azva .*-j VNET-POLE-azva$/m);
  t.notMatch(plan.iptablesRestore, /^-[AD] VNET-POL-FWD -i azva/m, 'the routed line stays');
  const after = parsePolicySave(savedAfter(plan.iptablesRestore, both));
  t.same(planPolicyChange(after, [{ hostVeth: 'azva', policy: p, mode: 'transparent' }], new Set()).iptablesRestore, '', 'then idempotent');
});

t.test('a partial read (iptables -S of the node chain, the dispatch chain and the named endpoint\'s chains) plans the same change', async (t) => {
  const pa = policy('10.240.1.4', { isolated: true, rules: [rule([peer('10.240.1.5/32')], null)] });
  const pb = policy('10.240.1.5', { isolated: true, rules: [rule([peer('10.240.1.6/32')], null)] });
  const state = savedAfter(planPolicyChange(parsePolicySave(NODE_SAVE), [{ hostVeth: 'azva', policy: pa }, { hostVeth: 'azvb', policy: pb }], new Set()).iptablesRestore, NODE_SAVE);
  const setA = renderEndpoint('azva', pa).sets[0]!.name;
  const setB = renderEndpoint('azvb', pb).sets[0]!.name;
  t.same(chainsToRead([{ hostVeth: 'azva', policy: null }]), ['VNET-POLE-azva', 'VNET-POLI-azva']);
  /** `iptables -S <chain>` as the tool prints it ('' for a chain that does not exist). */
  const listing = (chain: string): string => {
    const lines = state.split('\n');
    if (!lines.includes(`:${chain} - [0:0]`)) return '';
    return [`-N ${chain}`, ...lines.filter((l) => l.startsWith(`-A ${chain} `))].join('\n') + '\n';
  };
  const partial = parseChainListings(['VNET-FORWARD', 'VNET-POL-FWD', ...chainsToRead([{ hostVeth: 'azva', policy: null }])].map(listing));
  t.notOk(partial.complete);
  t.ok(partial.jumpFirst && partial.dispatchChain && partial.replies === 'first');
  t.same([...partial.endpoints.keys()].sort(), ['azva', 'azvb'], 'every dispatched endpoint is known');
  t.same(partial.endpoints.get('azvb')!.chains.get('VNET-POLI-azvb'), [], 'another endpoint\'s chain: by name only');
  const full = parsePolicySave(state);
  const del = [{ hostVeth: 'azva', policy: null }];
  t.equal(planPolicyChange(partial, del, new Set([setA, setB])).iptablesRestore, planPolicyChange(full, del, new Set([setA, setB])).iptablesRestore, 'the same restore as from the whole table');
  t.same(planPolicyChange(partial, del, new Set([setA, setB, `${setB}-t`])).staleSets.sort(), [setA, `${setB}-t`].sort(), 'stale candidates: the endpoint\'s old sets and fill leftovers (the kernel\'s reference count decides)');
  t.same(planPolicyChange(partial, [{ hostVeth: 'azva', policy: pa }], new Set([setA, setB])), { ipsetRestore: '', iptablesRestore: '', staleSets: [] }, 'a re-apply from a partial read is no transaction');
  // A stale endpoint holding the address (known only from its dispatch line) is removed by name.
  const takeover = planPolicyChange(partial, [{ hostVeth: 'azvnew', policy: policy('10.240.1.5', deny) }], new Set([setA, setB]));
  t.match(takeover.iptablesRestore, /^:VNET-POLI-azvb - \[0:0\]$/m);
  t.match(takeover.iptablesRestore, /^-X VNET-POLI-azvb$/m);
  t.match(takeover.iptablesRestore, /^-D VNET-POL-FWD -d 10\.240\.1\.5\/32 .*-j VNET-POLI-azvb$/m);
  t.doesNotThrow(() => savedAfter(takeover.iptablesRestore, state), 'every -D names a rule that exists');
});

t.test('the last endpoint out takes the replies line with it; the first one in puts it first', async (t) => {
  const pa = policy('10.240.1.4', deny);
  const first = planPolicyChange(parsePolicySave(NODE_SAVE), [{ hostVeth: 'azva', policy: pa }], new Set());
  const state = savedAfter(first.iptablesRestore, NODE_SAVE);
  t.match(state, /:VNET-POL-FWD - \[0:0\]\n(?:.*\n)*?-A VNET-POL-FWD -m conntrack/);
  t.equal(parsePolicySave(state).replies, 'first');
  const last = planPolicyChange(parsePolicySave(state), [{ hostVeth: 'azva', policy: null }], new Set());
  const after = savedAfter(last.iptablesRestore, state);
  t.notMatch(after, /-A VNET-POL-FWD/, 'VNET-POL-FWD is empty again');
  t.match(after, /:VNET-POL-FWD - \[0:0\]/, 'and still exists (VNET-FORWARD jumps to it)');
});

t.test('drop counters per endpoint and direction from iptables-save -c', async (t) => {
  const save = `*nat
[5:300] -A VNET-POLI-fake -j DROP
COMMIT
*filter
[9:756] -A VNET-FORWARD -m comment --comment "vnet-cni: policy" -j VNET-POL-FWD
[3:252] -A VNET-POL-FWD -d 10.240.1.4/32 -m comment --comment "vnet-cni: default/a ingress" -j VNET-POLI-azva
[1:84] -A VNET-POLI-azva -p tcp -m set --match-set VNET-P4-0011223344556677 src -m multiport --dports 80 -j RETURN
[2:168] -A VNET-POLI-azva -m comment --comment "vnet-cni: default/a ingress not allowed by policy" -j DROP
[0:0] -A VNET-POLE-azva -m comment --comment "vnet-cni: default/a egress not allowed by policy" -j DROP
[12345678901:0] -A VNET-POLE-azvb -m comment --comment "vnet-cni: default/b egress not allowed by policy" -j DROP
COMMIT
`;
  t.same(parsePolicyDrops(save), [
    { hostVeth: 'azva', direction: 'ingress', packets: 2n },
    { hostVeth: 'azva', direction: 'egress', packets: 0n },
    { hostVeth: 'azvb', direction: 'egress', packets: 12345678901n },
  ]);
});
