// Runs inside a lab VM (through vm-exec) for the netpol conformance test:
// programs compiled policies through the dataplane of the given mode, as the
// node daemon does after each compile. The node is the one the plugin recorded
// in the VM's state file.
//   stdin {"mode":"iptables"|"ebpf","updates":[{hostVeth,policy}]} -> applyPolicies
//   stdout: one JSON line {"ok":true,"ms":N} or {"ok":false,"error":"..."}.
import { readFileSync } from 'node:fs';
import { createDataplane } from '../../../control/dataplane/index.js';
import type { EndpointPolicyUpdate, NodeNetwork } from '../../../control/dataplane/types.js';
import type { DataplaneMode } from '../../../control/types.js';

async function main(): Promise<void> {
  const req = JSON.parse(readFileSync(0, 'utf8')) as { mode: DataplaneMode; updates: EndpointPolicyUpdate[] };
  const state = JSON.parse(readFileSync('/var/lib/vnet-cni/state.json', 'utf8')) as { node?: { network: NodeNetwork } };
  if (!state.node) throw new Error('the VM has no node state: ADD a pod first');
  const dp = await createDataplane(req.mode);
  const started = performance.now();
  await dp.applyPolicies(state.node.network, req.updates);
  console.log(JSON.stringify({ ok: true, ms: performance.now() - started }));
}

main().catch((err: unknown) => {
  console.log(JSON.stringify({ ok: false, error: (err as Error).message ?? String(err) }));
  process.exitCode = 1;
});
