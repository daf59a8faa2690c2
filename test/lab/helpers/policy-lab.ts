// What the policy lab test (test/lab/dataplane-policy.test.ts) needs in
// either dataplane: compiled policies applied inside a VM through the
// dataplane's own driver (policy-driver.ts for iptables, ebpf-policy-driver.ts
// for ebpf), attach/detach with a policy, and the drop counter of one pod's
// direction (iptables: the DROP closing its chain; ebpf: its vnet_pol_drops
// entry); plus bounded UDP senders and counting what a sink got per sender.
import path from 'node:path';
import { readFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import type { Lab } from '../../../lab/lab.js';
import { startChild } from '../../../lab/children.js';
import type { UdpSink } from '../../../lab/tools/net.js';
import { REPO, type Mode, type PodHandle, type VmCni } from './cni-harness.js';
import type { EndpointPolicy } from '../../../control/policy/types.js';
import type { EndpointPlan, NodeNetwork } from '../../../control/dataplane/types.js';

const DRIVER: Record<Mode, string> = {
  iptables: path.join(REPO, 'dist', 'test', 'lab', 'helpers', 'policy-driver.js'),
  ebpf: path.join(REPO, 'dist', 'test', 'lab', 'helpers', 'ebpf-policy-driver.js'),
};

export type Direction = 'ingress' | 'egress';
export interface DriverAnswer {
  ok: boolean;
  ms?: number;
  error?: string;
  out?: string;
}

/** The pods of one lab and the dataplane they run, driven from the test process. */
export class PolicyLab {
  private readonly vmOf = new Map<PodHandle, string>();
  /** applyPolicies wall time inside the VM, per call (informational). */
  readonly applyMs: number[] = [];

  constructor(
    readonly lab: Lab,
    readonly mode: Mode,
    readonly cni: Record<string, VmCni>,
  ) {}

  async add(vm: string, name: string): Promise<PodHandle> {
    const p = await this.cni[vm]!.addPod(name);
    this.vmOf.set(p, vm);
    return p;
  }

  vm(p: PodHandle): string {
    const vm = this.vmOf.get(p);
    if (!vm) throw new Error(`pod ${p.name} was not added through this PolicyLab`);
    return vm;
  }

  veth(p: PodHandle): string {
    return Object.values(this.cni[this.vm(p)]!.state().endpoints).find((e) => e.ip === p.ip)!.hostVeth;
  }

  /** The plugin's record of a pod as an EndpointPlan (for CHECK). */
  plan(p: PodHandle): EndpointPlan {
    const rec = Object.values(this.cni[this.vm(p)]!.state().endpoints).find((e) => e.ip === p.ip)! as unknown as EndpointPlan;
    return { containerId: rec.containerId, ifName: rec.ifName, netns: rec.netns, ip: rec.ip, prefixLength: rec.prefixLength, gateway: rec.gateway, hostVeth: rec.hostVeth, hostMac: rec.hostMac, podMac: rec.podMac, mtu: rec.mtu };
  }

  private network(vm: string): NodeNetwork {
    return (JSON.parse(readFileSync(path.join(this.lab.vmPaths(vm).varLib, 'state.json'), 'utf8')) as { node: { network: NodeNetwork } }).node.network;
  }

  /** One driver call inside the VM. iptables: {op, ...} in, one JSON line out; ebpf: op as argv, {network, ...} in, a word (or JSON) out. */
  async driver(vm: string, op: 'apply' | 'attach' | 'detach' | 'check' | 'drops' | 'state', extra: Record<string, unknown> = {}): Promise<DriverAnswer> {
    if (this.mode === 'iptables') {
      const res = await this.lab.execVm(vm, [process.execPath, DRIVER.iptables], { input: JSON.stringify({ op, ...extra }), timeoutMs: 120_000 });
      try {
        return JSON.parse(res.stdout.trim().split('\n').pop() ?? '') as DriverAnswer;
      } catch {
        return { ok: false, error: `driver: ${res.stderr.trim().slice(0, 1000)}` };
      }
    }
    const res = await this.lab.execVm(vm, [process.execPath, DRIVER.ebpf, op], { input: JSON.stringify({ network: this.network(vm), ...extra }), timeoutMs: 120_000 });
    if (res.code !== 0) return { ok: false, error: res.stderr.trim().slice(0, 1000) };
    const out = res.stdout.trim();
    const ms = /^(?:APPLIED|ATTACHED) ([\d.]+) ms$/m.exec(out)?.[1];
    return { ok: true, out, ...(ms ? { ms: Number(ms) } : {}) };
  }

  /** applyPolicies with these pods' policies (all on one VM). */
  async apply(...pods: [PodHandle, EndpointPolicy][]): Promise<void> {
    const vm = this.vm(pods[0]![0]);
    const res = await this.driver(vm, 'apply', { updates: pods.map(([p, policy]) => ({ hostVeth: this.veth(p), policy })) });
    if (!res.ok) throw new Error(`applyPolicies on ${vm}: ${res.error}`);
    if (res.ms !== undefined) this.applyMs.push(res.ms);
  }

  /**
   * Packets the policy of the endpoint with this address (on `vm`) dropped in this direction: -1 when the
   * iptables chain does not exist (nothing enforced); ebpf counts from 0.
   */
  async dropsOf(vm: string, ip: string, hostVeth: string, direction: Direction): Promise<number> {
    if (this.mode === 'iptables') {
      const save = vm === 'vm2' && this.legacyVm2 ? 'iptables-legacy-save' : 'iptables-nft-save';
      const res = await this.lab.execVm(vm, [save, '-c', '-t', 'filter']);
      const chain = `${direction === 'ingress' ? 'VNET-POLI-' : 'VNET-POLE-'}${hostVeth}`;
      const m = new RegExp(`^\\[(\\d+):\\d+\\] -A ${chain} .*-j DROP$`, 'm').exec(res.stdout);
      return m ? Number(m[1]) : -1;
    }
    const res = await this.driver(vm, 'drops');
    if (!res.ok) throw new Error(`drops on ${vm}: ${res.error}`);
    const all = JSON.parse(res.out || '[]') as Array<{ ip: string; direction: string; packets: number }>;
    return all.find((d) => d.ip === ip && d.direction === direction)?.packets ?? 0;
  }

  drops(p: PodHandle, direction: Direction): Promise<number> {
    return this.dropsOf(this.vm(p), p.ip, this.veth(p), direction);
  }

  /** vm2 runs iptables-legacy (a kube-proxy hint chain makes the backend detection pick it). */
  legacyVm2 = false;

  /** The attempt fails AND the drop counter of `to`'s direction rises: a verdict that never rests on a timeout alone. */
  async blocked(attempt: () => Promise<boolean>, to: PodHandle, direction: Direction): Promise<boolean> {
    const before = await this.drops(to, direction);
    const got = await attempt();
    const after = await this.drops(to, direction);
    return !got && before >= 0 && after > before;
  }
}

/** A bounded UDP sender in a pod: `count` datagrams "<tag>-<i>", one every 5 ms; prints STARTED and DONE. */
export function sender(from: PodHandle, ip: string, port: number, tag: string, count: number): ChildProcess {
  return startChild(['nsenter', `--net=${from.netns}`, '--', process.execPath, '-e', `
    const s = require('dgram').createSocket('udp4'); let i = 0; console.log('STARTED');
    const iv = setInterval(() => { s.send(${JSON.stringify(tag)} + '-' + (i++), ${port}, ${JSON.stringify(ip)}); if (i === ${count}) { clearInterval(iv); setTimeout(() => { console.log('DONE'); process.exit(0); }, 200); } }, 5);`]);
}

/** Distinct datagrams from one sender's tag that a sink received. */
export function countFrom(sink: UdpSink, tag: string): number {
  return new Set(sink.received.filter((d) => d.payload.startsWith(`${tag}-`)).map((d) => d.payload)).size;
}

/** Poll a condition every 50 ms until it holds or timeoutMs passes; its final value. */
export async function waitFor(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return cond();
}
