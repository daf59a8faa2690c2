// Rules written alike in one namespace are resolved once per update and share
// one peer list (control/policy/compile.ts): under pod churn (a peer pod added
// and removed, another relabelled out of the peer tier and back) the compiler
// kept across changes must still equal a compile from scratch at every step.
// The fast paths' semantics are checked elsewhere: policy-property (compiled
// policy vs a reference evaluator), ebpf-policy-compile (LPM entries vs the
// rules), policy-incremental (incremental vs from scratch on random events).
import t from 'tap';
import { world } from '../../bench/policy-compile.js';
import { compilePolicies, PolicyCompiler } from '../../control/policy/compile.js';
import type { PolicySnapshot } from '../../control/policy/types.js';

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
