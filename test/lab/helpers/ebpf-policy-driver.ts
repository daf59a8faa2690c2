// Drives the ebpf dataplane's policy inside a lab VM, as the daemon will once
// the policy source is wired in. Reads {network, updates?, plan?} (NodeNetwork,
// EndpointPolicyUpdate[], EndpointPlan) as JSON on stdin:
//   apply   EbpfDataplane.applyPolicies(network, updates), prints `APPLIED <ms>`
//   attach  veth pair + pod side + attachEndpoint(network, plan) (plan.policy), prints `ATTACHED <ms>`
//   detach  detachEndpoint(network, plan) + the veth deleted, prints `DETACHED`
//   drops   the node's per-endpoint policy drop counters, as JSON
//   state   the policy maps summarised, as JSON
// Runs inside the VM (its netns and bpffs view), never in the test process.
import { readFileSync } from 'node:fs';
import { EbpfDataplane } from '../../../control/dataplane/ebpf/index.js';
import { EbpfPrograms } from '../../../control/dataplane/ebpf/programs.js';
import { configurePodSide, createVethPair, deleteHostVeth } from '../../../control/netlink/veth.js';
import type { EndpointPlan, EndpointPolicyUpdate, NodeNetwork } from '../../../control/dataplane/types.js';

const input = JSON.parse(readFileSync(0, 'utf8')) as { network: NodeNetwork; updates?: EndpointPolicyUpdate[]; plan?: EndpointPlan };
const dp = new EbpfDataplane();
const started = performance.now();
const ms = (): string => `${(performance.now() - started).toFixed(1)} ms`;

async function withPrograms(fn: (p: EbpfPrograms) => Promise<unknown>): Promise<void> {
  const p = await EbpfPrograms.open(input.network.bpfRoot);
  try {
    const plain = (_k: string, v: unknown): unknown => (typeof v === 'bigint' ? Number(v) : v instanceof Map ? (Object.fromEntries(v) as unknown) : v);
    console.log(JSON.stringify(await fn(p), plain));
  } finally {
    p.close();
  }
}

switch (process.argv[2]) {
  case 'apply':
    await dp.applyPolicies(input.network, input.updates ?? []);
    console.log(`APPLIED ${ms()}`);
    break;
  case 'attach':
    await createVethPair(input.plan!);
    await configurePodSide(input.plan!);
    await dp.attachEndpoint(input.network, input.plan!);
    console.log(`ATTACHED ${ms()}`);
    break;
  case 'detach':
    await dp.detachEndpoint(input.network, input.plan!);
    await deleteHostVeth(input.plan!.hostVeth);
    console.log('DETACHED');
    break;
  case 'drops':
    await withPrograms((p) => p.policyDrops());
    break;
  case 'state':
    await withPrograms((p) => p.policyState());
    break;
  default:
    console.error('usage: ebpf-policy-driver.js apply|attach|detach|drops|state < {"network":..., "updates":[...], "plan":{...}}');
    process.exit(2);
}
