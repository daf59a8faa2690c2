// `debug policy`: what the kernel holds for NetworkPolicy against what the
// control plane computed, per endpoint. The diffs are pure (fixtures in
// test/unit/policy-diff.test.ts); reading the kernel is read-only (bpftool map
// dump of the pinned policy maps, iptables-save, ipset save). Without a daemon
// there is no computed policy: only what the kernel says about itself is
// checked (ids without entries, ids nobody uses, sets a chain lacks).
import { compileDirection, type CompiledDirection } from '../../dataplane/ebpf/policy.js';
import { MAPS, POL_F, decodePolCidrKey, decodePolEp, decodePolEpKey, decodePolIdKey, decodePolMatch, decodePolPortKey } from '../../dataplane/ebpf/layouts.js';
import { parsePolicySave, renderEndpoint, SET_PREFIX, type KernelPolicy } from '../../dataplane/iptables/policy-rules.js';
import { detectIptablesBackend, onPath } from '../../dataplane/iptables/backend.js';
import type { DirectionPolicy, EndpointPolicy } from '../../policy/types.js';
import type { NetworkMode } from '../../dataplane/types.js';
import { run } from '../../exec.js';
import { DataplaneError } from '../../errors.js';
import { dumpPinnedMap } from '../bpftool.js';
import { mapPin, type DebugContext } from '../context.js';

/** One difference; `endpoint` is the pod address (or '-' for node-wide ones). */
export interface PolicyIssue {
  endpoint: string;
  kind: 'missing' | 'extra' | 'different' | 'empty-id' | 'unused-id' | 'unregistered-id' | 'missing-set' | 'set-members';
  detail: string;
}

export interface PolicyKernelDiff {
  dataplane: 'ebpf' | 'iptables';
  /** false: no computed policy (no daemon), only the kernel's own consistency was checked */
  compared: boolean;
  issues: PolicyIssue[];
  /** issues beyond the cap, not listed */
  more: number;
  /** the kernel could not be read (no bpftool, maps of an older build): why */
  unavailable?: string;
}

/** The cap on listed issues: a node whose kernel state is gone says so in a screenful. */
export const MAX_ISSUES = 200;

/** What the control plane computed for one local endpoint. */
export interface ExpectedEndpoint {
  address: string;
  hostVeth?: string;
  policy: EndpointPolicy;
}

// ---- ebpf --------------------------------------------------------------------

export interface EbpfPolicyKernel {
  eps: Map<string, { ingressId: number; egressId: number; flags: number }>;
  ids: Set<number>;
  /** vnet_pol_cidrs: id -> "cidr" -> "set S flags F" */
  cidrs: Map<number, Map<string, string>>;
  /** vnet_pol_ports: id -> "set S proto P port X/bits" */
  ports: Map<number, Set<string>>;
}

const cidrValue = (set: number, flags: number): string => (flags & 1 ? 'any port' : set === 0 ? 'no port' : `port set ${set}`);
const portText = (p: { set: number; proto: number; port: number; bits: number }): string => `set ${p.set} proto ${p.proto} port ${p.port}/${p.bits}`;

export function decodeEbpfPolicy(raw: { eps: RawEntry[]; ids: RawEntry[]; cidrs: RawEntry[]; ports: RawEntry[] }): EbpfPolicyKernel {
  const out: EbpfPolicyKernel = { eps: new Map(), ids: new Set(), cidrs: new Map(), ports: new Map() };
  for (const e of raw.eps) if (e.value) out.eps.set(decodePolEpKey(e.key).ip, decodePolEp(e.value));
  for (const e of raw.ids) out.ids.add(decodePolIdKey(e.key));
  for (const e of raw.cidrs) {
    if (!e.value) continue;
    const k = decodePolCidrKey(e.key);
    const m = decodePolMatch(e.value);
    let byId = out.cidrs.get(k.id);
    if (!byId) out.cidrs.set(k.id, (byId = new Map<string, string>()));
    byId.set(k.cidr, cidrValue(m.set, m.flags));
  }
  for (const e of raw.ports) {
    const k = decodePolPortKey(e.key);
    let byId = out.ports.get(k.id);
    if (!byId) out.ports.set(k.id, (byId = new Set<string>()));
    byId.add(portText(k));
  }
  return out;
}

interface RawEntry {
  key: Buffer;
  value?: Buffer;
}

function expectedEntries(c: CompiledDirection): { cidrs: Map<string, string>; ports: Set<string> } {
  return {
    cidrs: new Map(c.cidrs.map((e) => [`${e.cidr.addr}/${e.cidr.prefixlen}`, cidrValue(e.match.set, e.match.flags)])),
    ports: new Set(c.ports.map(portText)),
  };
}

/** `expected` undefined: no daemon, only the kernel's own consistency. */
export function diffEbpfPolicy(expected: readonly ExpectedEndpoint[] | undefined, k: EbpfPolicyKernel): PolicyIssue[] {
  const issues: PolicyIssue[] = [];
  const used = new Set<number>();
  for (const ep of k.eps.values()) for (const id of [ep.ingressId, ep.egressId]) if (id) used.add(id);
  const entriesOf = (id: number): number => (k.cidrs.get(id)?.size ?? 0) + (k.ports.get(id)?.size ?? 0);
  const checkDirection = (ip: string, name: 'ingress' | 'egress', id: number, isolated: boolean, want: DirectionPolicy | undefined): void => {
    const wantIsolated = want ? want.isolated : isolated;
    if (want && want.isolated !== isolated) {
      issues.push({ endpoint: ip, kind: 'different', detail: `${name}: the kernel has it ${isolated ? 'isolated' : 'open'}, the control plane computed it ${want.isolated ? 'isolated' : 'open'}` });
    }
    if (!isolated || !wantIsolated) return;
    if (id === 0) {
      issues.push({ endpoint: ip, kind: 'unregistered-id', detail: `${name} is isolated but points at no policy id` });
      return;
    }
    if (!k.ids.has(id)) issues.push({ endpoint: ip, kind: 'unregistered-id', detail: `${name} points at policy id ${id}, which vnet_pol_ids does not register` });
    if (!want) return;
    let c: CompiledDirection;
    try {
      c = compileDirection(want);
    } catch (err) {
      issues.push({ endpoint: ip, kind: 'different', detail: `${name}: the computed rules do not compile (${(err as Error).message})` });
      return;
    }
    const exp = expectedEntries(c);
    const haveC = k.cidrs.get(id) ?? new Map<string, string>();
    const haveP = k.ports.get(id) ?? new Set<string>();
    if (entriesOf(id) === 0 && exp.cidrs.size + exp.ports.size > 0) {
      issues.push({ endpoint: ip, kind: 'empty-id', detail: `${name} points at policy id ${id}, which has no entries (${exp.cidrs.size} peer and ${exp.ports.size} port entries expected): everything is dropped` });
      return;
    }
    for (const [cidr, v] of exp.cidrs) {
      const have = haveC.get(cidr);
      if (have === undefined) issues.push({ endpoint: ip, kind: 'missing', detail: `${name} id ${id}: peer entry ${cidr} -> ${v} missing` });
      else if (have !== v) issues.push({ endpoint: ip, kind: 'different', detail: `${name} id ${id}: peer entry ${cidr} is ${have}, expected ${v}` });
    }
    for (const [cidr, v] of haveC) if (!exp.cidrs.has(cidr)) issues.push({ endpoint: ip, kind: 'extra', detail: `${name} id ${id}: unexpected peer entry ${cidr} -> ${v}` });
    for (const p of exp.ports) if (!haveP.has(p)) issues.push({ endpoint: ip, kind: 'missing', detail: `${name} id ${id}: port entry ${p} missing` });
    for (const p of haveP) if (!exp.ports.has(p)) issues.push({ endpoint: ip, kind: 'extra', detail: `${name} id ${id}: unexpected port entry ${p}` });
  };
  const wanted = new Map((expected ?? []).map((e) => [e.address, e.policy]));
  for (const [ip, ep] of k.eps) {
    const want = wanted.get(ip);
    if (expected && !want && (ep.flags & (POL_F.INGRESS_ISOLATED | POL_F.EGRESS_ISOLATED)) !== 0) {
      issues.push({ endpoint: ip, kind: 'extra', detail: 'the kernel isolates this address but the control plane has no endpoint with it' });
      continue;
    }
    checkDirection(ip, 'ingress', ep.ingressId, (ep.flags & POL_F.INGRESS_ISOLATED) !== 0, want?.ingress);
    checkDirection(ip, 'egress', ep.egressId, (ep.flags & POL_F.EGRESS_ISOLATED) !== 0, want?.egress);
  }
  for (const e of expected ?? []) {
    if (k.eps.has(e.address) || !(e.policy.ingress.isolated || e.policy.egress.isolated)) continue;
    const dirs = [e.policy.ingress.isolated ? 'ingress' : '', e.policy.egress.isolated ? 'egress' : ''].filter(Boolean).join(' and ');
    issues.push({ endpoint: e.address, kind: 'missing', detail: `no vnet_pol_eps entry: ${dirs} should be isolated but the kernel allows everything` });
  }
  const ids = new Set([...k.ids, ...k.cidrs.keys(), ...k.ports.keys()]);
  for (const id of [...ids].sort((a, b) => a - b)) {
    if (used.has(id)) continue;
    issues.push({ endpoint: '-', kind: 'unused-id', detail: `policy id ${id} (${k.ids.has(id) ? 'registered' : 'not registered'}, ${entriesOf(id)} entries) is used by no endpoint` });
  }
  return issues;
}

// ---- iptables ----------------------------------------------------------------

/** `ipset save` of our sets: name -> members as "cidr" or "cidr nomatch" (single addresses with /32). */
export function parseIpsetSave(text: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const line of text.split('\n')) {
    const m = /^(create|add) (\S+)(?: (\S+)(.*))?$/.exec(line.trim());
    if (!m || !m[2]!.startsWith(SET_PREFIX.ipv4)) continue;
    if (!out.has(m[2]!)) out.set(m[2]!, new Set());
    if (m[1] === 'add') out.get(m[2]!)!.add(memberText(m[3]!, / nomatch\b/.test(m[4] ?? '')));
  }
  return out;
}

const memberText = (cidr: string, nomatch: boolean): string => `${cidr.includes('/') ? cidr : `${cidr}/32`}${nomatch ? ' nomatch' : ''}`;

function lineDiff(where: string, want: readonly string[], have: readonly string[]): { kind: PolicyIssue['kind']; detail: string }[] {
  const out: { kind: PolicyIssue['kind']; detail: string }[] = [];
  const haveSet = new Set(have);
  const wantSet = new Set(want);
  for (const l of want) if (!haveSet.has(l)) out.push({ kind: 'missing', detail: `${where}: missing ${l}` });
  for (const l of have) if (!wantSet.has(l)) out.push({ kind: 'extra', detail: `${where}: unexpected ${l}` });
  if (out.length === 0 && want.some((l, i) => have[i] !== l)) out.push({ kind: 'different', detail: `${where}: the same rules in a different order (the first match decides)` });
  return out;
}

/** Expected endpoints need `hostVeth` (the store's record); those without one are skipped. `mode`: the node's pod shape (absent = bridge). */
export function diffIptablesPolicy(expected: readonly ExpectedEndpoint[] | undefined, kernel: KernelPolicy, sets: Map<string, Set<string>>, mode?: NetworkMode): PolicyIssue[] {
  const issues: PolicyIssue[] = [];
  const byVeth = new Map<string, ExpectedEndpoint>();
  for (const e of expected ?? []) if (e.hostVeth) byVeth.set(e.hostVeth, e);
  if (expected && expected.some((e) => e.policy.ingress.isolated || e.policy.egress.isolated)) {
    if (!kernel.jumpPresent) issues.push({ endpoint: '-', kind: 'missing', detail: 'FORWARD has no jump to the policy chains: nothing is enforced' });
    else if (!kernel.jumpFirst) issues.push({ endpoint: '-', kind: 'different', detail: 'the jump to the policy chains is not the first rule of the node chain' });
  }
  const addressOf = (veth: string): string => byVeth.get(veth)?.address ?? kernel.endpoints.get(veth)?.address?.replace(/\/32$/, '') ?? veth;
  const wantedSets = new Map<string, Set<string>>();
  for (const veth of new Set([...byVeth.keys(), ...kernel.endpoints.keys()])) {
    const have = kernel.endpoints.get(veth);
    const exp = byVeth.get(veth);
    const ip = addressOf(veth);
    if (expected && !exp) {
      if (have && (have.chains.size || have.dispatch.length)) issues.push({ endpoint: ip, kind: 'extra', detail: `policy chains for ${veth}, which no endpoint of the control plane uses` });
      continue;
    }
    if (exp) {
      let want;
      try {
        want = renderEndpoint(veth, exp.policy, mode);
      } catch (err) {
        issues.push({ endpoint: ip, kind: 'different', detail: `the computed rules do not render (${(err as Error).message})` });
        continue;
      }
      for (const s of want.sets) wantedSets.set(s.name, new Set(s.entries.map((e) => memberText(e.cidr, e.nomatch))));
      for (const d of lineDiff(`${veth} dispatch`, want.dispatch, have?.dispatch ?? [])) issues.push({ endpoint: ip, ...d });
      for (const c of want.chains) {
        const lines = have?.chains.get(c.name);
        if (lines === undefined) issues.push({ endpoint: ip, kind: 'missing', detail: `chain ${c.name} (${c.direction}) missing` });
        else for (const d of lineDiff(c.name, c.lines, lines)) issues.push({ endpoint: ip, ...d });
      }
      for (const name of have?.chains.keys() ?? []) if (!want.chains.some((c) => c.name === name)) issues.push({ endpoint: ip, kind: 'extra', detail: `chain ${name}: that direction should not be isolated` });
    }
    for (const chain of have?.chains.keys() ?? []) {
      for (const s of kernel.setRefs.get(chain) ?? []) if (!sets.has(s)) issues.push({ endpoint: ip, kind: 'missing-set', detail: `${chain} matches ipset ${s}, which does not exist` });
    }
  }
  for (const [name, members] of wantedSets) {
    const have = sets.get(name);
    if (!have) {
      issues.push({ endpoint: '-', kind: 'missing-set', detail: `ipset ${name} (${members.size} members) missing` });
      continue;
    }
    const missing = [...members].filter((m) => !have.has(m));
    const extra = [...have].filter((m) => !members.has(m));
    if (missing.length || extra.length) {
      issues.push({ endpoint: '-', kind: 'set-members', detail: `ipset ${name}: ${missing.length ? `missing ${missing.slice(0, 10).join(', ')}` : ''}${missing.length && extra.length ? '; ' : ''}${extra.length ? `unexpected ${extra.slice(0, 10).join(', ')}` : ''}` });
    }
  }
  return issues;
}

// ---- reading the kernel (read-only) -------------------------------------------

async function readEbpf(ctx: DebugContext): Promise<EbpfPolicyKernel> {
  const dump = (m: string): Promise<RawEntry[]> => dumpPinnedMap(mapPin(ctx, m));
  return decodeEbpfPolicy({ eps: await dump(MAPS.polEps), ids: await dump(MAPS.polIds), cidrs: await dump(MAPS.polCidrs), ports: await dump(MAPS.polPorts) });
}

async function readIptables(): Promise<{ kernel: KernelPolicy; sets: Map<string, Set<string>> }> {
  const tools = await detectIptablesBackend();
  const res = await run([tools.save, '-t', 'filter'], { timeoutMs: 30_000 });
  if (res.code !== 0) throw new DataplaneError(`${tools.save} -t filter: ${res.stderr.trim() || `exit ${res.code}`}`);
  let sets = new Map<string, Set<string>>();
  if (onPath('ipset')) {
    const s = await run(['ipset', 'save'], { timeoutMs: 30_000 });
    if (s.code !== 0) throw new DataplaneError(`ipset save: ${s.stderr.trim() || `exit ${s.code}`}`);
    sets = parseIpsetSave(s.stdout);
  }
  return { kernel: parsePolicySave(res.stdout), sets };
}

export function capIssues(dataplane: PolicyKernelDiff['dataplane'], compared: boolean, issues: PolicyIssue[]): PolicyKernelDiff {
  return { dataplane, compared, issues: issues.slice(0, MAX_ISSUES), more: Math.max(0, issues.length - MAX_ISSUES) };
}

/** undefined: the node has no dataplane recorded (nothing to compare). `expected` undefined: no daemon. */
export async function collectPolicyKernel(ctx: DebugContext, expected: ExpectedEndpoint[] | undefined): Promise<PolicyKernelDiff | undefined> {
  const mode = ctx.snapshot.state.node?.mode;
  try {
    return await readAndDiff(ctx, mode, expected);
  } catch (err) {
    // The rest of the view (the computed rules) still prints.
    return { dataplane: mode === 'iptables' ? 'iptables' : 'ebpf', compared: expected !== undefined, issues: [], more: 0, unavailable: (err as Error).message };
  }
}

async function readAndDiff(ctx: DebugContext, mode: string | undefined, expected: ExpectedEndpoint[] | undefined): Promise<PolicyKernelDiff | undefined> {
  if (mode === 'ebpf') {
    if (!ctx.pinned) return capIssues('ebpf', expected !== undefined, [{ endpoint: '-', kind: 'missing', detail: `no pinned maps under ${ctx.pinRoot}` }]);
    return capIssues('ebpf', expected !== undefined, diffEbpfPolicy(expected, await readEbpf(ctx)));
  }
  if (mode === 'iptables') {
    const { kernel, sets } = await readIptables();
    return capIssues('iptables', expected !== undefined, diffIptablesPolicy(expected, kernel, sets, ctx.snapshot.state.node?.network.netMode));
  }
  return undefined;
}
