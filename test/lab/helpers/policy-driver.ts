// Runs inside a lab VM (through vm-exec) and drives the iptables dataplane's
// policy calls directly, as the node daemon will once it compiles policies:
// the node is the one the plugin recorded in the VM's state file.
//   stdin {"op":"apply","updates":[{hostVeth,policy}]}          -> applyPolicies
//   stdin {"op":"check","plan":EndpointPlan}                     -> checkEndpoint
//   stdin {"op":"attach","plan":EndpointPlan}                    -> veth pair, pod side, attachEndpoint (plan.policy)
//   stdin {"op":"detach","plan":EndpointPlan}                    -> detachEndpoint, veth deleted
// stdout: one JSON line {"ok":true,"ms":N} or {"ok":false,"error":"...","code":"..."}.
import { readFileSync } from 'node:fs';
import { IptablesDataplane } from '../../../control/dataplane/iptables/index.js';
import { configurePodSide, createVethPair, deleteHostVeth } from '../../../control/netlink/veth.js';
import type { EndpointPlan, EndpointPolicyUpdate, NodeNetwork } from '../../../control/dataplane/types.js';

type Request =
  | { op: 'apply'; updates: EndpointPolicyUpdate[] }
  | { op: 'check' | 'attach' | 'detach'; plan: EndpointPlan };

async function main(): Promise<void> {
  const req = JSON.parse(readFileSync(0, 'utf8')) as Request;
  const state = JSON.parse(readFileSync('/var/lib/vnet-cni/state.json', 'utf8')) as { node?: { network: NodeNetwork } };
  if (!state.node) throw new Error('the VM has no node state: ADD a pod in iptables mode first');
  const node = state.node.network;
  const dp = new IptablesDataplane();
  const started = performance.now();
  switch (req.op) {
    case 'apply':
      await dp.applyPolicies(node, req.updates);
      break;
    case 'check':
      await dp.checkEndpoint(node, req.plan);
      break;
    case 'attach':
      await createVethPair(req.plan);
      await configurePodSide(req.plan);
      await dp.attachEndpoint(node, req.plan);
      break;
    case 'detach':
      await dp.detachEndpoint(node, req.plan);
      await deleteHostVeth(req.plan.hostVeth);
      break;
  }
  console.log(JSON.stringify({ ok: true, ms: performance.now() - started }));
}

main().catch((err: unknown) => {
  const e = err as { message?: string; code?: string };
  console.log(JSON.stringify({ ok: false, error: e.message ?? String(err), code: e.code }));
  process.exitCode = 1;
});
