// `debug policy [pod]`: from the daemon's DUMP, the policy engine's state
// (synced, problems, counts) and, per endpoint (or the one pod asked for),
// the policies selecting it and its compiled rules, with a flag when what
// was last applied differs from what compiles now; and every difference
// between what the control plane computed and what the kernel holds
// (policy-diff.ts). Without a daemon, only the kernel's own consistency.
import type { NodeState } from '../../store/node-store.js';
import type { DebugContext } from '../context.js';
import { collectPolicyKernel, type ExpectedEndpoint, type PolicyKernelDiff } from './policy-diff.js';
import type { EndpointPolicyView, PolicyEngineStatus } from '../../policy/engine.js';
import type { CompiledRule, DirectionPolicy } from '../../policy/types.js';

export interface PolicyDump {
  status: PolicyEngineStatus;
  source: string;
  endpoints: EndpointPolicyView[];
}

export interface PolicyView {
  enabled: boolean;
  why?: string;
  /** The node enforces policy but the daemon has no source: rules frozen (control/policy/node.ts PolicyHold). */
  held?: boolean;
  dump?: PolicyDump;
  /** the kernel against the computed policy (undefined: the node records no dataplane) */
  kernel?: PolicyKernelDiff;
}

export function collectPolicy(state: NodeState, fromDaemon: boolean, pod?: string): PolicyView {
  const dump = (state as NodeState & { policy?: PolicyDump }).policy;
  const hold = (state as NodeState & { policyHold?: { message: string } }).policyHold;
  if (!dump && hold && fromDaemon) return { enabled: false, held: true, why: hold.message };
  if (!dump) {
    const why = fromDaemon
      ? 'the daemon runs without --policy-dir or --network-policy'
      : `no daemon answered; ${state.policyEnforced ? 'this node enforces policy (new endpoints start default-deny until the daemon is back)' : 'this node does not enforce policy'}`;
    return { enabled: false, why };
  }
  if (pod === undefined) return { enabled: true, dump };
  return { enabled: true, dump: { ...dump, endpoints: dump.endpoints.filter((e) => e.endpoint.address === pod || `${e.endpoint.namespace}/${e.endpoint.name}` === pod) } };
}

/** The view plus the kernel diff, scoped to the pod asked for (node-wide issues always shown). */
export async function collectPolicyWithKernel(ctx: DebugContext, pod?: string): Promise<PolicyView> {
  const { state } = ctx.snapshot;
  const view = collectPolicy(state, ctx.snapshot.source.kind === 'daemon', pod);
  const full = (state as NodeState & { policy?: PolicyDump }).policy;
  const veths = new Map(Object.values(state.endpoints).map((r) => [r.ip, r.hostVeth]));
  const expected: ExpectedEndpoint[] | undefined = full?.endpoints.map((e) => ({
    address: e.endpoint.address,
    policy: e.policy,
    ...(veths.has(e.endpoint.address) ? { hostVeth: veths.get(e.endpoint.address)! } : {}),
  }));
  const kernel = await collectPolicyKernel(ctx, expected);
  if (!kernel) return view;
  if (pod === undefined) return { ...view, kernel };
  const addresses = new Set(view.dump ? view.dump.endpoints.map((e) => e.endpoint.address) : Object.values(state.endpoints).filter((r) => r.ip === pod || `${r.podNamespace}/${r.podName}` === pod).map((r) => r.ip));
  return { ...view, kernel: { ...kernel, issues: kernel.issues.filter((i) => i.endpoint === '-' || addresses.has(i.endpoint)) } };
}

function kernelText(k: PolicyKernelDiff, uncompared = 'no daemon'): string {
  if (k.unavailable !== undefined) return `kernel (${k.dataplane}): unavailable: ${k.unavailable}\n`;
  const head = `kernel (${k.dataplane}): ${k.compared ? 'compared with the computed policy' : `${uncompared}: only the kernel's own consistency checked`}\n`;
  if (k.issues.length === 0) return `${head}differences: none\n`;
  return `${head}differences (${k.issues.length + k.more}):\n${k.issues.map((i) => `  ! ${i.endpoint} ${i.kind}: ${i.detail}\n`).join('')}${k.more ? `  ... ${k.more} more\n` : ''}`;
}

function ruleText(r: CompiledRule): string {
  const peers = r.peers === null ? 'any address' : r.peers.map((p) => (p.except.length ? `${p.cidr} except ${p.except.join(',')}` : p.cidr)).join(' ');
  const ports = r.ports === null ? 'any port' : r.ports.map((p) => `${p.protocol}/${p.port === p.endPort ? p.port : p.port === 0 && p.endPort === 65535 ? 'any' : `${p.port}-${p.endPort}`}`).join(' ');
  return `allow ${ports} ${r.peers === null ? 'from/to' : 'peers'} ${peers}   [${r.sources.join(', ')}]`;
}

function directionText(name: string, d: DirectionPolicy): string {
  if (!d.isolated) return `  ${name}: not isolated (all allowed)\n`;
  if (d.rules.length === 0) return `  ${name}: deny all\n`;
  return `  ${name}:\n${d.rules.map((r) => `    ${ruleText(r)}\n`).join('')}`;
}

export function renderPolicy(v: PolicyView): string {
  if (v.held) return `policy: HELD (${v.why})\n${v.kernel ? kernelText(v.kernel, 'held, nothing computed') : ''}`;
  if (!v.enabled || !v.dump) return `policy: off (${v.why})\n${v.kernel ? kernelText(v.kernel) : ''}`;
  const { status, source, endpoints } = v.dump;
  const s = status.stats;
  let out = `policy: source ${source}, ${status.synced ? 'synced' : 'NOT SYNCED (new endpoints start default-deny)'}, ${s ? `${s.validPolicies}/${s.policies} policies, ${s.rules} rules, ${s.peers} peers, ${s.selectors} selectors` : 'nothing compiled yet'}, pending ${status.pending}, last sync ${status.lastSyncLatencySeconds === undefined ? '-' : `${(status.lastSyncLatencySeconds * 1000).toFixed(1)} ms`}\n`;
  for (const p of status.problems) out += `${p.broken ? 'BROKEN' : 'problem'}: ${p.policy}: ${p.message}\n`;
  for (const e of endpoints) {
    const pod = e.endpoint.namespace && e.endpoint.name ? `${e.endpoint.namespace}/${e.endpoint.name}` : '(no pod name)';
    const stale = e.applied === undefined ? ' (not programmed yet)' : JSON.stringify(e.applied) !== JSON.stringify(e.policy) ? ' (PROGRAMMED RULES DIFFER: sync pending)' : '';
    out += `\n${pod} ${e.endpoint.address}${stale}\n  selected by: ${e.selectedBy.length ? e.selectedBy.join(', ') : '(none)'}\n`;
    out += directionText('ingress', e.policy.ingress) + directionText('egress', e.policy.egress);
  }
  if (v.kernel) out += `\n${kernelText(v.kernel)}`;
  return out;
}
