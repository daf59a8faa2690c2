// Programs NetworkPolicy in the iptables dataplane (policy-rules.ts renders
// it). One change = read what the kernel holds, create the new peer sets
// (ipset restore: filled under a temporary name and renamed, so a set is
// whole or absent), swap the chains (one iptables-restore --noflush: one
// atomic commit in both backends), then destroy the sets nothing references
// any more. Rules never disappear before their replacements exist: no window.
//
// The read is what the change touches, not the table: a change of a few
// endpoints (ADD, DEL, CHECK, a policy update) lists VNET-FORWARD,
// VNET-POL-FWD and those endpoints' chains (`iptables -S <chain>`, in
// parallel), so its cost does not grow with the node's other rules (the
// kube-proxy rules, other pods' chains). A batch (the daemon's first sync)
// reads the table once (iptables-save).
//
// Changes are read-modify-write of the shared dispatch chain, so they are
// serialised: in this process by a promise chain, across processes (a
// standalone plugin ADD beside the daemon) by a flock.
import { readFile } from 'node:fs/promises';
import { run } from '../../exec.js';
import { setSysctl } from '../../netlink/ip.js';
import { DataplaneError, DataplaneUnavailableError, TryAgainError } from '../../errors.js';
import { acquireLock } from '../../store/lock.js';
import type { EndpointPolicy } from '../../policy/types.js';
import { XTABLES_WAIT_S, busyError, onPath, xtablesBusy, type IptablesTools } from './backend.js';
import type { NetworkMode } from '../types.js';
import {
  chainName, chainsToRead, changeTouches, parseChainListings, parsePolicyDrops, parsePolicySave, planPolicyChange, renderEndpoint,
  renderPolicyTeardown, renderSetDestroy, FORWARD_CHAIN, POLICY_FWD_CHAIN, SET_PREFIX, type KernelPolicy, type PolicyChange, type PolicyDrop,
} from './policy-rules.js';

export const DEFAULT_POLICY_LOCK = '/run/vnet-cni/iptables-policy.lock';
const LOCK_TIMEOUT_MS = 30_000;
const BRIDGE_NF = '/proc/sys/net/bridge/bridge-nf-call-iptables';
/** Up to this many endpoints in one change, read their chains one by one; more, read the whole table once. */
const PARTIAL_READ_MAX = 4;

/**
 * Same-VM pod traffic is bridged, and a bridged frame only passes iptables
 * when br_netfilter is loaded and bridge-nf-call-iptables is 1 in the node's
 * network namespace (the sysctl is per netns on current kernels). Without it
 * FORWARD never sees pod-to-pod packets on one VM, so policy is refused.
 */
export async function ensureBridgeNetfilter(): Promise<void> {
  let value: string;
  try {
    value = (await readFile(BRIDGE_NF, 'utf8')).trim();
  } catch {
    throw new DataplaneUnavailableError(
      'NetworkPolicy in the iptables dataplane needs the br_netfilter kernel module (/proc/sys/net/bridge is missing): ' +
        'run `modprobe br_netfilter` on the node (and list it in /etc/modules-load.d) so that bridged pod traffic passes iptables',
    );
  }
  if (value !== '1') await setSysctl('net.bridge.bridge-nf-call-iptables', '1');
}

function isolates(p: EndpointPolicy | null): boolean {
  return p !== null && (p.ingress.isolated || p.egress.isolated);
}

export class IptablesPolicy {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly tools: () => Promise<IptablesTools>,
    private readonly lockFile = DEFAULT_POLICY_LOCK,
  ) {}

  /** Run fn alone: after this process's earlier changes, under the cross-process lock. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(async () => {
      const lock = await acquireLock(this.lockFile, LOCK_TIMEOUT_MS);
      try {
        return await fn();
      } finally {
        await lock.release();
      }
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async readKernel(tools: IptablesTools): Promise<KernelPolicy> {
    const res = await run([tools.save, '-t', 'filter'], { timeoutMs: 30_000 });
    if (res.code !== 0) throw new DataplaneError(`${tools.save} -t filter failed: ${res.stderr.trim() || `exit ${res.code}`}`);
    return parsePolicySave(res.stdout);
  }

  /** `iptables -S` of one chain: its lines, or '' if the chain does not exist. */
  private async listChain(tools: IptablesTools, chain: string): Promise<string> {
    const res = await run([tools.iptables, '-w', String(XTABLES_WAIT_S), '-t', 'filter', '-S', chain], { timeoutMs: 30_000 });
    if (res.code === 0) return res.stdout;
    if (xtablesBusy(res.stderr)) throw busyError(`listing ${chain}`, res.stderr);
    // legacy: "No chain/target/match by that name"; iptables-nft 1.8.9 says "chain `X' in table `filter' is
    // incompatible, use 'nft' tool" for a chain that does not exist (a chain of ours is never nft-only).
    if (/no chain|does not exist|incompatible/i.test(res.stderr)) return '';
    throw new DataplaneError(`${tools.iptables} -S ${chain} failed: ${res.stderr.trim() || `exit ${res.code}`}`);
  }

  /** The node chain, the dispatch chain and these chains, listed in parallel (a partial KernelPolicy). */
  private async readChains(tools: IptablesTools, chains: string[]): Promise<KernelPolicy> {
    return parseChainListings(await Promise.all([FORWARD_CHAIN, POLICY_FWD_CHAIN, ...chains].map((c) => this.listChain(tools, c))));
  }

  /**
   * What a change of these endpoints needs to know. The dispatch chain names every endpoint's chains
   * (a chain and its dispatch lines come and go in one commit), so an ADD (no chains yet) or a DEL
   * (its chains go whatever they hold) needs no more; the content of an endpoint's chains only tells an
   * unchanged re-apply (no transaction, counters kept), so it is read for policed endpoints that stay so.
   */
  private async readFor(tools: IptablesTools, changes: readonly PolicyChange[]): Promise<KernelPolicy> {
    if (changes.length > PARTIAL_READ_MAX) return this.readKernel(tools);
    const base = await this.readChains(tools, []);
    const again = changes.filter((c) => isolates(c.policy) && base.endpoints.has(c.hostVeth));
    return again.length ? this.readChains(tools, chainsToRead(again)) : base;
  }

  private async ipset(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
    if (!onPath('ipset')) throw new DataplaneUnavailableError('NetworkPolicy in the iptables dataplane needs the ipset tool on the node; install ipset');
    return run(['ipset', ...args], { timeoutMs: 60_000, ...(input === undefined ? {} : { input }) });
  }

  private async listSets(): Promise<Set<string>> {
    const res = await this.ipset(['list', '-n']);
    if (res.code !== 0) throw new DataplaneError(`ipset list -n failed: ${res.stderr.trim() || `exit ${res.code}`}`);
    return new Set(res.stdout.split('\n').map((l) => l.trim()).filter(Boolean));
  }

  /** Our sets no rule references (`ipset list -t`: the kernel's reference count). */
  private async unreferenced(): Promise<string[]> {
    const res = await this.ipset(['list', '-t']);
    if (res.code !== 0) return [];
    const refs = new Map<string, number>();
    let name = '';
    for (const line of res.stdout.split('\n')) {
      const n = /^Name: (\S+)/.exec(line);
      if (n) name = n[1]!;
      const r = /^References: (\d+)/.exec(line);
      if (r && name) refs.set(name, Number(r[1]));
    }
    return [...refs].filter(([name, n]) => n === 0 && name.startsWith(SET_PREFIX.ipv4)).map(([name]) => name);
  }

  private async restore(tools: IptablesTools, input: string, what: string): Promise<void> {
    const res = await run([tools.restore, '--noflush', '-w', String(XTABLES_WAIT_S)], { input, timeoutMs: 60_000 });
    if (res.code === 0) return;
    if (xtablesBusy(res.stderr)) throw busyError(what, res.stderr);
    throw new DataplaneError(`${what} failed: ${tools.restore} exited ${res.code}: ${res.stderr.trim().slice(0, 1000)}`);
  }

  /** Best effort: a set still referenced (another writer) or already gone stays for the next change. */
  private async destroySets(names: string[]): Promise<void> {
    if (!names.length) return;
    const res = await this.ipset(['restore'], renderSetDestroy(names));
    if (res.code !== 0) for (const n of names) await this.ipset(['destroy', n]);
  }

  /**
   * Replace the policy of these endpoints (null = remove it) in one
   * transaction per tool. Resolves once the kernel enforces the result.
   */
  async apply(changes: PolicyChange[]): Promise<void> {
    if (!changes.length) return;
    // Render first: a policy the dataplane cannot express fails before anything is touched.
    for (const c of changes) if (c.policy) renderEndpoint(c.hostVeth, c.policy);
    if (changes.some((c) => isolates(c.policy))) await ensureBridgeNetfilter();
    const tools = await this.tools();
    const setsNeeded = changes.some((c) => isolates(c.policy));
    await this.exclusive(async () => {
      // The set names are read beside the chains when the change adds rules (it may need new sets).
      const [kernel, listed] = await Promise.all([this.readFor(tools, changes), setsNeeded ? this.listSets() : undefined]);
      // Removing what is not there (a DEL of a pod without policy, a pod no policy selects): one read.
      if (!changeTouches(kernel, changes)) return;
      if (setsNeeded && !kernel.forwardChain) {
        throw new DataplaneError('the node chain VNET-FORWARD is missing: the node is not set up for the iptables dataplane');
      }
      const sets = listed ?? (await this.listSets());
      const plan = planPolicyChange(kernel, changes, sets);
      if (plan.ipsetRestore) {
        const res = await this.ipset(['-exist', 'restore'], plan.ipsetRestore);
        if (res.code !== 0) throw new DataplaneError(`creating policy ipsets failed: ${res.stderr.trim().slice(0, 1000)}`);
      }
      if (plan.iptablesRestore) await this.restore(tools, plan.iptablesRestore, 'programming NetworkPolicy chains');
      // A partial read does not know who else uses the old sets: the kernel's reference count does. Only
      // a change that took chains away (or a fill leftover) can have left one unused. The flock keeps
      // every other writer out until the sets it creates are referenced.
      const tookChains = changes.some((c) => kernel.endpoints.has(c.hostVeth)) || plan.iptablesRestore.includes('\n-X ');
      if (kernel.complete) await this.destroySets(plan.staleSets);
      else if (plan.staleSets.length || (plan.iptablesRestore && tookChains)) await this.destroySets(await this.unreferenced());
    });
  }

  /** Throws DataplaneError naming the first difference between the kernel and this endpoint's policy. */
  async check(hostVeth: string, policy: EndpointPolicy, mode?: NetworkMode): Promise<void> {
    const tools = await this.tools();
    const kernel = await this.readChains(tools, [chainName('egress', hostVeth), chainName('ingress', hostVeth)]);
    const want = renderEndpoint(hostVeth, policy, mode);
    const have = kernel.endpoints.get(hostVeth);
    for (const c of want.chains) {
      const lines = have?.chains.get(c.name);
      if (!lines) throw new DataplaneError(`policy chain ${c.name} (${c.direction} of ${policy.pod ?? policy.address}) is missing`);
      if (lines.join('\n') !== c.lines.join('\n')) throw new DataplaneError(`policy chain ${c.name} holds ${lines.length} rule(s), not the ${c.lines.length} its policy compiles to`);
    }
    for (const d of want.dispatch) {
      if (!have?.dispatch.includes(d)) throw new DataplaneError(`policy dispatch rule missing from VNET-POL-FWD: ${d}`);
    }
    for (const name of have?.chains.keys() ?? []) {
      if (!want.chains.some((c) => c.name === name)) throw new DataplaneError(`policy chain ${name} is programmed but the policy does not isolate that direction`);
    }
    if (want.chains.length && !kernel.jumpFirst) throw new DataplaneError('VNET-FORWARD does not start with the jump to VNET-POL-FWD: policy is bypassed');
  }

  /**
   * Packets each endpoint's policy dropped, per direction: the counters of the DROP closing its chains
   * (one `iptables-save -c -t filter`; a scrape, not a CNI call). A chain swap by an update starts them at 0.
   */
  async drops(): Promise<PolicyDrop[]> {
    const tools = await this.tools();
    const res = await run([tools.save, '-c', '-t', 'filter'], { timeoutMs: 30_000 });
    if (res.code !== 0) throw new DataplaneError(`${tools.save} -c -t filter failed: ${res.stderr.trim() || `exit ${res.code}`}`);
    return parsePolicyDrops(res.stdout);
  }

  /** Remove every policy chain and set (node teardown). Safe to rerun. */
  async teardown(): Promise<void> {
    const tools = await this.tools();
    await this.exclusive(async () => {
      const kernel = await this.readKernel(tools);
      const input = renderPolicyTeardown(kernel);
      if (input) await this.restore(tools, input, 'removing NetworkPolicy chains');
      if (!onPath('ipset')) return;
      const sets = [...(await this.listSets())].filter((s) => s.startsWith(SET_PREFIX.ipv4));
      await this.destroySets(sets);
    }).catch((err: unknown) => {
      if (err instanceof TryAgainError) throw err;
      throw err instanceof DataplaneError ? err : new DataplaneError(`removing NetworkPolicy state failed: ${(err as Error).message}`, { cause: err });
    });
  }
}
