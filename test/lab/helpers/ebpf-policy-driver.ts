// Drives the ebpf dataplane's policy inside a lab VM, as the daemon will once
// the policy source is wired in: `node ebpf-policy-driver.js apply` reads
// {network, updates} (NodeNetwork, EndpointPolicyUpdate[]) as JSON on stdin,
// calls EbpfDataplane.applyPolicies and prints `APPLIED <ms>`; `drops` prints the per-endpoint
// policy drop counters of the node as JSON. Runs inside the VM (its netns and
// bpffs view), never in the test process.
import { readFileSync } from 'node:fs';
import { EbpfDataplane } from '../../../control/dataplane/ebpf/index.js';
import { EbpfPrograms } from '../../../control/dataplane/ebpf/programs.js';
import type { EndpointPolicyUpdate, NodeNetwork } from '../../../control/dataplane/types.js';

const input = JSON.parse(readFileSync(0, 'utf8')) as { network: NodeNetwork; updates?: EndpointPolicyUpdate[] };
if (process.argv[2] === 'apply') {
  const started = performance.now();
  await new EbpfDataplane().applyPolicies(input.network, input.updates ?? []);
  console.log(`APPLIED ${(performance.now() - started).toFixed(1)} ms`);
} else if (process.argv[2] === 'drops') {
  const p = await EbpfPrograms.open(input.network.bpfRoot);
  try {
    console.log(JSON.stringify((await p.policyDrops()).map((d) => ({ ...d, packets: Number(d.packets) }))));
  } finally {
    p.close();
  }
} else {
  console.error('usage: ebpf-policy-driver.js apply|drops < {"network":..., "updates":[...]}');
  process.exit(2);
}
