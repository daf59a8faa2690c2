// Drives the ebpf dataplane's policy inside a lab VM, as the daemon will once
// the policy source is wired in: `node policy-driver.js apply` reads
// {network, updates} (NodeNetwork, EndpointPolicyUpdate[]) as JSON on stdin
// and calls EbpfDataplane.applyPolicies; `drops` prints the per-endpoint
// policy drop counters of the node as JSON. Runs inside the VM (its netns and
// bpffs view), never in the test process.
import { readFileSync } from 'node:fs';
import { EbpfDataplane } from '../../../control/dataplane/ebpf/index.js';
import { EbpfPrograms } from '../../../control/dataplane/ebpf/programs.js';
import type { EndpointPolicyUpdate, NodeNetwork } from '../../../control/dataplane/types.js';

const input = JSON.parse(readFileSync(0, 'utf8')) as { network: NodeNetwork; updates?: EndpointPolicyUpdate[] };
if (process.argv[2] === 'apply') {
  await new EbpfDataplane().applyPolicies(input.network, input.updates ?? []);
  console.log('APPLIED');
} else if (process.argv[2] === 'drops') {
  const p = await EbpfPrograms.open(input.network.bpfRoot);
  try {
    console.log(JSON.stringify((await p.policyDrops()).map((d) => ({ ...d, packets: Number(d.packets) }))));
  } finally {
    p.close();
  }
} else {
  console.error('usage: policy-driver.js apply|drops < {"network":..., "updates":[...]}');
  process.exit(2);
}
