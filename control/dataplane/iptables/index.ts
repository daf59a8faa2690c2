// The iptables dataplane. Bridge mode (the original plugin's shape): pods are
// ports of a bridge that also holds the NIC; ebtables satisfies the fabric's
// MAC rules. Transparent mode: no bridge, eth0 left alone; each pod is a
// routed endpoint (../routed.ts, the shape the ebpf dataplane uses) and the
// kernel routes. Either way iptables MASQUERADE gives pods the internet as
// the primary IP.
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { run, runOk } from '../../exec.js';
import { netlink, linkInfo, setSysctl, type LinkInfo } from '../../netlink/ip.js';
import { DataplaneError, DataplaneUnavailableError } from '../../errors.js';
import type { Dataplane, EndpointPlan, NodeNetwork, EndpointPolicyUpdate } from '../types.js';
import { XTABLES_WAIT_S, busyError, detectIptablesBackend, onPath, xtablesBusy, type IptablesTools } from './backend.js';
import { ensureBridge, restoreNic } from './bridge.js';
import { IptablesPolicy } from './policy.js';
import type { PolicyDrop } from './policy-rules.js';
import { attachRoutedHost, checkRoutedHost } from '../routed.js';
import {
  EB_POST_CHAIN, EB_PRE_CHAIN, EB_VIAHOST_CHAIN, FORWARD_CHAIN, POLICY_FWD_CHAIN, SNAT_CHAIN,
  ebtablesEndpointRule, ebtablesNodeRules, ebtablesViaHostRules, jumpRules, renderIptablesRestore,
} from './rules.js';

const EBTABLES = 'ebtables';
export { XTABLES_WAIT_S };

async function ebtables(args: readonly string[]): Promise<{ code: number; stderr: string }> {
  return run([EBTABLES, '--concurrent', '-t', 'nat', ...args], { timeoutMs: 30_000 });
}

/** Append a rule unless an identical one exists (ebtables -C); `knownAbsent` skips the check. */
async function ebEnsure(chain: string, spec: readonly string[], knownAbsent = false): Promise<void> {
  if (!knownAbsent && (await ebtables(['--check', chain, ...spec])).code === 0) return;
  const res = await ebtables(['-A', chain, ...spec]);
  if (res.code !== 0) throw new DataplaneError(`ebtables -A ${chain} ${spec.join(' ')}: ${res.stderr.trim()}`);
}

async function ebDelete(chain: string, spec: readonly string[]): Promise<void> {
  // Repeat in case a crash left duplicates; bounded.
  for (let i = 0; i < 8; i++) {
    if ((await ebtables(['-D', chain, ...spec])).code !== 0) return;
  }
}

async function ebEnsureChain(chain: string, hook: string): Promise<void> {
  const list = await ebtables(['-L', chain]);
  if (list.code !== 0) {
    const res = await ebtables(['-N', chain, '-P', 'RETURN']);
    if (res.code !== 0 && !/already exists|File exists/i.test(res.stderr)) throw new DataplaneError(`ebtables -N ${chain}: ${res.stderr.trim()}`);
  }
  await ebEnsure(hook, ['-j', chain]);
}

/** ipsToRouteViaHost in bridge mode: VNET-VIAHOST holds exactly the node's list (refilled: the list may have changed). */
async function ensureViaHost(node: NodeNetwork): Promise<void> {
  const rules = ebtablesViaHostRules(node);
  if (rules.length === 0) {
    await removeViaHost();
    return;
  }
  await ebEnsureChain(EB_VIAHOST_CHAIN, 'PREROUTING');
  await ebtables(['-F', EB_VIAHOST_CHAIN]);
  for (const r of rules) await ebEnsure(r.chain, r.spec, true);
}

async function removeViaHost(): Promise<void> {
  await ebDelete('PREROUTING', ['-j', EB_VIAHOST_CHAIN]);
  await ebtables(['-F', EB_VIAHOST_CHAIN]);
  await ebtables(['-X', EB_VIAHOST_CHAIN]);
}

function transparent(x: { netMode?: string }): boolean {
  return x.netMode === 'transparent';
}

const BR_STATE_FORWARDING = '3';
const FORWARDING_WAIT_MS = 1000;

/**
 * Wait (bounded) until the bridge forwards on the pod's port. A new port stays
 * disabled until the kernel's linkwatch has seen the veth's carrier, which it
 * batches (up to 1 s under a storm of link changes); a gratuitous ARP sent
 * before that is dropped at the bridge, and neighbours keep a reused IP's old
 * MAC (storm-rounds caught it). Without sysfs there is nothing to poll: go on.
 */
async function waitForwarding(hostVeth: string): Promise<void> {
  const file = `/sys/class/net/${hostVeth}/brport/state`;
  const deadline = Date.now() + FORWARDING_WAIT_MS;
  for (;;) {
    const state = await readFile(file, 'utf8').then((t) => t.trim(), () => undefined);
    if (state === undefined || state === BR_STATE_FORWARDING || Date.now() > deadline) return;
    await sleep(2);
  }
}

export class IptablesDataplane implements Dataplane {
  readonly mode = 'iptables' as const;
  private tools: IptablesTools | undefined;
  private readonly policy = new IptablesPolicy(() => this.ipt());

  private async ipt(): Promise<IptablesTools> {
    this.tools ??= await detectIptablesBackend();
    return this.tools;
  }

  async probe(node: NodeNetwork): Promise<void> {
    // Transparent mode rewrites no MACs: ebtables only matters on a bridge.
    const missing = transparent(node) ? [] : [EBTABLES].filter((tool) => !onPath(tool));
    if (!onPath('iptables-nft-restore') && !onPath('iptables-legacy-restore')) missing.push('iptables-restore');
    if (missing.length) throw new DataplaneUnavailableError(`iptables dataplane needs ${missing.join(', ')} on the node; install ebtables and iptables`);
    const nic = (await linkInfo(node.nic)) ?? (await linkInfo(node.bridge));
    if (!nic) throw new DataplaneUnavailableError(`host interface ${node.nic} not found; set "master" in the conflist to the VM's NIC`);
  }

  async ensureNode(node: NodeNetwork): Promise<void> {
    if (transparent(node)) {
      const nic = await linkInfo(node.nic);
      if (!nic) throw new DataplaneUnavailableError(`host interface ${node.nic} not found; set "master" in the conflist to the VM's NIC`);
      if (nic.master) throw new DataplaneUnavailableError(`${node.nic} is a port of ${nic.master}; transparent mode needs the NIC unbridged (drain the node's bridge-mode pods first)`);
      // The kernel routes every pod packet; proxy ARP answers only on interfaces that forward.
      await setSysctl('net.ipv4.ip_forward', '1');
    } else {
      await ensureBridge(node);
    }
    const tools = await this.ipt();
    // VNET-FORWARD jumps to the policy dispatch chain: create it (empty) unless it exists.
    // Declaring it in the restore below would flush the policies of every pod.
    const created = await run([tools.iptables, '-w', String(XTABLES_WAIT_S), '-t', 'filter', '-N', POLICY_FWD_CHAIN]);
    if (created.code !== 0 && xtablesBusy(created.stderr)) throw busyError(`creating ${POLICY_FWD_CHAIN}`, created.stderr);
    await runOk([tools.restore, '--noflush', '-w', String(XTABLES_WAIT_S)], { input: renderIptablesRestore(node) }).catch((err: unknown) => {
      if (xtablesBusy((err as Error).message)) throw busyError(`programming ${SNAT_CHAIN}/${FORWARD_CHAIN}`, (err as Error).message);
      throw new DataplaneError(`programming ${SNAT_CHAIN}/${FORWARD_CHAIN} failed: ${(err as Error).message}`, { cause: err });
    });
    for (const j of jumpRules()) {
      const check = await run([tools.iptables, '-w', String(XTABLES_WAIT_S), '-t', j.table, '-C', j.chain, ...j.spec]);
      if (check.code === 0) continue;
      if (xtablesBusy(check.stderr)) throw busyError(`checking the ${j.chain} jump`, check.stderr);
      await runOk([tools.iptables, '-w', String(XTABLES_WAIT_S), '-t', j.table, '-I', j.chain, '1', ...j.spec]).catch((err: unknown) => {
        if (xtablesBusy((err as Error).message)) throw busyError(`inserting the ${j.chain} jump`, (err as Error).message);
        throw new DataplaneError(`inserting the ${j.chain} jump failed: ${(err as Error).message}`, { cause: err });
      });
    }
    if (transparent(node)) return; // routed: nothing crosses a bridge, so no MAC rewriting
    await ebEnsureChain(EB_PRE_CHAIN, 'PREROUTING');
    await ebEnsureChain(EB_POST_CHAIN, 'POSTROUTING');
    for (const r of ebtablesNodeRules(node)) await ebEnsure(r.chain, r.spec);
    await ensureViaHost(node);
  }

  /** Upgrade: the same as ensureNode, which is idempotent (iptables-restore declares and refills our chains in one commit). */
  async upgradeNode(node: NodeNetwork): Promise<void> {
    await this.ensureNode(node);
  }

  async attachEndpoint(node: NodeNetwork, ep: EndpointPlan): Promise<void> {
    // Policy first: its chains match the veth by name and the pod by address, so they hold
    // before the port joins the bridge (or, routed, the veth comes up): the pod cannot send or receive until then.
    if (ep.policy) await this.policy.apply([{ hostVeth: ep.hostVeth, policy: ep.policy, mode: ep.netMode }]);
    try {
      if (transparent(ep)) {
        // No garp: nothing shares an L2 segment with the pod but its own host veth, made with it.
        await attachRoutedHost(ep, node);
        return;
      }
      // Packets the node routed to this address before its policy existed (from another VM: they reach the
      // node's own MAC, then FORWARD accepted them with no chain to stop them) wait in the bridge's neighbour
      // queue for an ARP answer, and the pod's first answer would release them past the policy. Drop them
      // with the entry: from here on FORWARD holds the chains.
      if (ep.policy) await run(['ip', '-4', 'neigh', 'flush', 'to', ep.ip, 'dev', node.bridge], { timeoutMs: 10_000 }).catch(() => undefined);
      await netlink([{ op: 'linkSet', dev: ep.hostVeth, master: node.bridge, up: true }]);
      const r = ebtablesEndpointRule(node, ep);
      // The rule names the pod's MAC: one this ADD just made up cannot be in the chain (saves a spawn).
      await ebEnsure(r.chain, r.spec, ep.freshMacs === true);
    } catch (err) {
      // The caller only undoes a completed attach: take back the policy this one programmed (port down first).
      if (ep.policy) {
        await netlink([{ op: 'linkSet', dev: ep.hostVeth, up: false }]).catch(() => undefined);
        await this.policy.apply([{ hostVeth: ep.hostVeth, policy: null }]).catch(() => undefined);
      }
      throw err;
    }
    await waitForwarding(ep.hostVeth);
    // The pod is on the bridge now: announce it. Its address may have been another pod's moments ago
    // (released IPs are reused), and the pods next to it would keep the old MAC until their ARP entry
    // expires (~30-45 s of silence). Best effort: the pod works without it once those entries age out.
    await netlink([{ op: 'garp', dev: ep.ifName, address: ep.ip, mac: ep.podMac }], ep.netns).catch(() => undefined);
  }

  async applyPolicies(node: NodeNetwork, updates: EndpointPolicyUpdate[]): Promise<void> {
    // The node's pods all have its shape (a node changes mode only once drained).
    await this.policy.apply(updates.map((u) => ({ hostVeth: u.hostVeth, policy: u.policy, mode: node.netMode })));
  }

  /** NetworkPolicy drops per endpoint (host veth) and direction: the chains' DROP counters (metrics). */
  policyDrops(): Promise<PolicyDrop[]> {
    return this.policy.drops();
  }

  async detachEndpoint(node: NodeNetwork, ep: EndpointPlan): Promise<void> {
    if (!transparent(ep)) {
      const r = ebtablesEndpointRule(node, ep);
      await ebDelete(r.chain, r.spec);
    } // routed: the /32 route and the sysctls go with the veth
    // The pod goes: take its port down before its policy, so it never runs unpoliced.
    await netlink([{ op: 'linkSet', dev: ep.hostVeth, up: false }]).catch(() => undefined);
    await this.policy.apply([{ hostVeth: ep.hostVeth, policy: null }]);
  }

  async checkEndpoint(node: NodeNetwork, ep: EndpointPlan): Promise<void> {
    // Policy first: it applies to both pod shapes.
    if (ep.policy) await this.policy.check(ep.hostVeth, ep.policy, ep.netMode);
    if (transparent(ep)) {
      await checkRoutedHost(ep);
      return;
    }
    const host = await linkInfo(ep.hostVeth);
    if (!host) throw new DataplaneError(`host veth ${ep.hostVeth} not found`);
    if (host.master !== node.bridge) throw new DataplaneError(`host veth ${ep.hostVeth} is not a port of ${node.bridge}`);
    const r = ebtablesEndpointRule(node, ep);
    if ((await ebtables(['--check', r.chain, ...r.spec])).code !== 0) throw new DataplaneError(`ebtables rule for ${ep.ip} missing from ${r.chain}`);
  }

  async teardownNode(node: NodeNetwork): Promise<void> {
    const tools = await this.ipt();
    // Absent rules and chains are fine (a rerun after a crash); a busy xtables lock is not: the
    // caller's transaction fails with "try again" and keeps the node record, so a retry finishes.
    const ipt = async (args: string[]): Promise<number> => {
      const res = await run([tools.iptables, '-w', String(XTABLES_WAIT_S), ...args]);
      if (res.code !== 0 && xtablesBusy(res.stderr)) throw busyError(`removing the node's iptables rules`, res.stderr);
      return res.code;
    };
    for (const j of jumpRules()) {
      for (let i = 0; i < 8; i++) {
        if ((await ipt(['-t', j.table, '-D', j.chain, ...j.spec])) !== 0) break;
      }
    }
    for (const [table, chain] of [['nat', SNAT_CHAIN], ['filter', FORWARD_CHAIN]] as const) {
      await ipt(['-t', table, '-F', chain]);
      await ipt(['-t', table, '-X', chain]);
    }
    await this.policy.teardown();
    for (const [chain, hook] of [[EB_PRE_CHAIN, 'PREROUTING'], [EB_POST_CHAIN, 'POSTROUTING']] as const) {
      await ebDelete(hook, ['-j', chain]);
      await ebtables(['-F', chain]);
      await ebtables(['-X', chain]);
    }
    await removeViaHost();
    await restoreNic(node);
  }

  /**
   * Cheap (rules are re-ensured whenever this is false). Bridge mode: the NIC is a port of our bridge.
   * Transparent: the NIC is unbridged and the SNAT jump is in place (one iptables -C).
   */
  async hasNodeState(node: NodeNetwork, nic?: LinkInfo): Promise<boolean> {
    const link = nic ?? (await linkInfo(node.nic));
    if (!transparent(node)) return link?.master === node.bridge;
    if (!link || link.master) return false;
    const tools = await this.ipt();
    const j = jumpRules()[0]!;
    return (await run([tools.iptables, '-w', String(XTABLES_WAIT_S), '-t', j.table, '-C', j.chain, ...j.spec])).code === 0;
  }
}
