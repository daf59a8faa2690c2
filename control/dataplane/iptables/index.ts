// The iptables dataplane. Bridge mode (the original plugin's shape): pods are
// ports of a bridge that also holds the NIC; ebtables satisfies the fabric's
// MAC rules. Transparent mode: no bridge, eth0 left alone; each pod is a
// routed endpoint (../routed.ts, the shape the ebpf dataplane uses) and the
// kernel routes. Either way iptables MASQUERADE gives pods the internet as
// the primary IP.
import { accessSync, constants } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';
import { run, runOk } from '../../exec.js';
import { netlink, linkInfo, setSysctl, type LinkInfo } from '../../netlink/ip.js';
import { DataplaneError, DataplaneUnavailableError, TryAgainError } from '../../errors.js';
import type { Dataplane, EndpointPlan, NodeNetwork, EndpointPolicyUpdate } from '../types.js';
import { detectIptablesBackend, type IptablesTools } from './backend.js';
import { ensureBridge, restoreNic } from './bridge.js';
import { attachRoutedHost, checkRoutedHost } from '../routed.js';
import {
  EB_POST_CHAIN, EB_PRE_CHAIN, EB_VIAHOST_CHAIN, FORWARD_CHAIN, SNAT_CHAIN,
  ebtablesEndpointRule, ebtablesViaHostRules, ebtablesNodeRules, jumpRules, renderIptablesRestore,
} from './rules.js';

const EBTABLES = 'ebtables';
/** Seconds iptables waits for the xtables lock (legacy backend; nft takes none) before we answer "try again". */
export const XTABLES_WAIT_S = 5;

/** iptables' complaint when another process held the xtables lock for longer than -w allowed. */
function xtablesBusy(text: string): boolean {
  return /xtables lock/i.test(text);
}

function busyError(what: string, detail: string): TryAgainError {
  return new TryAgainError(`${what}: another process held the xtables lock (/run/xtables.lock) for more than ${XTABLES_WAIT_S} s; retry`, { details: detail.trim().slice(0, 500) });
}

/** Is an executable with this name on PATH? Checked here because `command -v` would need a shell. */
function onPath(tool: string): boolean {
  return (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').some((dir) => {
    try {
      accessSync(path.join(dir, tool), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

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
    if (transparent(ep)) {
      // No garp: nothing shares an L2 segment with the pod but its own host veth, made with it.
      await attachRoutedHost(ep, node);
      return;
    }
    await netlink([{ op: 'linkSet', dev: ep.hostVeth, master: node.bridge, up: true }]);
    const r = ebtablesEndpointRule(node, ep);
    // The rule names the pod's MAC: one this ADD just made up cannot be in the chain (saves a spawn).
    await ebEnsure(r.chain, r.spec, ep.freshMacs === true);
    await waitForwarding(ep.hostVeth);
    // The pod is on the bridge now: announce it. Its address may have been another pod's moments ago
    // (released IPs are reused), and the pods next to it would keep the old MAC until their ARP entry
    // expires (~30-45 s of silence). Best effort: the pod works without it once those entries age out.
    await netlink([{ op: 'garp', dev: ep.ifName, address: ep.ip, mac: ep.podMac }], ep.netns).catch(() => undefined);
  }

  async applyPolicies(_node: NodeNetwork, updates: EndpointPolicyUpdate[]): Promise<void> {
    if (updates.length) throw new DataplaneError('NetworkPolicy enforcement is not implemented in this dataplane yet');
  }

  async detachEndpoint(node: NodeNetwork, ep: EndpointPlan): Promise<void> {
    if (transparent(ep)) return; // the /32 route and the sysctls go with the veth
    const r = ebtablesEndpointRule(node, ep);
    await ebDelete(r.chain, r.spec);
  }

  async checkEndpoint(node: NodeNetwork, ep: EndpointPlan): Promise<void> {
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
