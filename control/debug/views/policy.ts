// `debug policy [pod]`: from the daemon's DUMP, the policy engine's state
// (synced, problems, counts) and, per endpoint (or the one pod asked for),
// the policies selecting it and its compiled rules, with a flag when what
// was last applied differs from what compiles now. A diff against what the
// kernel holds needs the dataplanes' read-back (not there yet).
import type { NodeState } from '../../store/node-store.js';
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
  dump?: PolicyDump;
}

export function collectPolicy(state: NodeState, fromDaemon: boolean, pod?: string): PolicyView {
  const dump = (state as NodeState & { policy?: PolicyDump }).policy;
  if (!dump) {
    const why = fromDaemon
      ? 'the daemon runs without --policy-dir or --network-policy'
      : `no daemon answered; ${state.policyEnforced ? 'this node enforces policy (new endpoints start default-deny until the daemon is back)' : 'this node does not enforce policy'}`;
    return { enabled: false, why };
  }
  if (pod === undefined) return { enabled: true, dump };
  return { enabled: true, dump: { ...dump, endpoints: dump.endpoints.filter((e) => e.endpoint.address === pod || `${e.endpoint.namespace}/${e.endpoint.name}` === pod) } };
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
  if (!v.enabled || !v.dump) return `policy: off (${v.why})\n`;
  const { status, source, endpoints } = v.dump;
  const s = status.stats;
  let out = `policy: source ${source}, ${status.synced ? 'synced' : 'NOT SYNCED (new endpoints start default-deny)'}, ${s ? `${s.validPolicies}/${s.policies} policies, ${s.rules} rules, ${s.peers} peers, ${s.selectors} selectors` : 'nothing compiled yet'}, pending ${status.pending}, last sync ${status.lastSyncLatencySeconds === undefined ? '-' : `${(status.lastSyncLatencySeconds * 1000).toFixed(1)} ms`}\n`;
  for (const p of status.problems) out += `problem: ${p.policy}: ${p.message}\n`;
  for (const e of endpoints) {
    const pod = e.endpoint.namespace && e.endpoint.name ? `${e.endpoint.namespace}/${e.endpoint.name}` : '(no pod name)';
    const stale = e.applied === undefined ? ' (not programmed yet)' : JSON.stringify(e.applied) !== JSON.stringify(e.policy) ? ' (PROGRAMMED RULES DIFFER: sync pending)' : '';
    out += `\n${pod} ${e.endpoint.address}${stale}\n  selected by: ${e.selectedBy.length ? e.selectedBy.join(', ') : '(none)'}\n`;
    out += directionText('ingress', e.policy.ingress) + directionText('egress', e.policy.egress);
  }
  return out;
}
