// Scenario "policy-compile": the policy compiler alone (no kernel), at the
// issue's scale: N policies × 250 local endpoints × 5,000 cluster pods in 20
// namespaces. Each policy selects one app label, allows ingress from the web
// tier of its namespace and from the namespaces of one team on a named port
// and 443, and egress to one team's namespaces on UDP 53 plus the internet.
// Rows: a compile from scratch (what the daemon's first sync costs; changes
// after it are incremental, see bench/policy-latency.ts), the one-endpoint
// compile from scratch (what an ADD cost before the engine kept its
// compiler), and the heap after a compile. The peer is 0 policies.
import { compilePolicies, type LocalEndpoint } from '../control/policy/compile.js';
import type { NetworkPolicy, PolicySnapshot } from '../control/policy/types.js';
import type { BenchOptions } from './lib/options.js';
import { median } from './lib/stats.js';
import { ratioText, type Row } from './lib/table.js';

const NAMESPACES = Array.from({ length: 20 }, (_, i) => `ns${i}`);

export function world(policies: number, pods: number, locals: number): { snap: PolicySnapshot; locals: LocalEndpoint[] } {
  const snap: PolicySnapshot = { policies: [], namespaces: NAMESPACES.map((name, i) => ({ name, labels: { team: `t${i % 5}` } })), pods: [] };
  const eps: LocalEndpoint[] = [];
  for (let i = 0; i < pods; i++) {
    const namespace = NAMESPACES[i % NAMESPACES.length]!;
    const address = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    snap.pods.push({
      namespace, name: `p${i}`, labels: { app: `app${i % 50}`, tier: ['web', 'db', 'cache'][i % 3]! },
      ips: [{ family: 'ipv4', address }], namedPorts: [{ name: 'http', protocol: 'TCP', port: 8080 }],
    });
    if (i < locals) eps.push({ family: 'ipv4', address, namespace, name: `p${i}` });
  }
  for (let i = 0; i < policies; i++) {
    const p: NetworkPolicy = {
      metadata: { namespace: NAMESPACES[i % NAMESPACES.length]!, name: `np${i}` },
      spec: {
        podSelector: { matchLabels: { app: `app${i % 50}` } },
        ingress: [{ from: [{ podSelector: { matchLabels: { tier: 'web' } } }, { namespaceSelector: { matchLabels: { team: `t${i % 5}` } } }], ports: [{ port: 'http' }, { port: 443 }] }],
        egress: [{ to: [{ namespaceSelector: { matchLabels: { team: `t${(i + 1) % 5}` } } }], ports: [{ protocol: 'UDP', port: 53 }] }, { to: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['10.0.0.0/8'] } }] }],
      },
    };
    snap.policies.push(p);
  }
  return { snap, locals: eps };
}

function timeMs(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

export function runPolicyCompile(opts: BenchOptions): Row[] {
  const rows: Row[] = [];
  const sizes = opts.quick ? [0, 100] : [0, 100, 1000];
  let peer = NaN;
  for (const n of sizes) {
    const { snap, locals } = world(n, 5000, 250);
    const full: number[] = [];
    const one: number[] = [];
    let stats = '';
    for (let r = 0; r < opts.repeats; r++) {
      full.push(timeMs(() => {
        stats = JSON.stringify(compilePolicies(snap, locals).stats);
      }));
      one.push(timeMs(() => compilePolicies(snap, locals, { only: new Set([locals[0]!.address]) })));
    }
    const heap = process.memoryUsage().heapUsed / 2 ** 20;
    if (n === 0) peer = median(full);
    opts.log(`policy-compile ${n} policies: ${stats}`);
    rows.push({ scenario: 'policy compile, 250 endpoints x 5000 pods', setup: `${n} policies`, value: median(full), unit: 'ms', detail: `heap ${heap.toFixed(0)} MiB`, vsPeer: ratioText(median(full), peer, '0 policies') });
    rows.push({ scenario: 'policy compile, one endpoint (ADD)', setup: `${n} policies`, value: median(one), unit: 'ms' });
  }
  return rows;
}
