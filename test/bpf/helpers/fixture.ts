// A loaded dataplane for BPF_PROG_TEST_RUN tests: pinned under a unique root,
// test runs executed inside a throwaway netns (FIB/conntrack lookups resolve
// there, never in the root netns), everything removed in teardown.
import path from 'node:path';
import { native, type BpfMap, type BpfProgram, type TestRunResult } from '../../../native/index.js';
import { EbpfPrograms, type EbpfConfig } from '../../../control/dataplane/ebpf/programs.js';
import { MAPS } from '../../../control/dataplane/ebpf/layouts.js';
import { cleanupStale, ensureBpffs, Netns, pinRootFor, removePinRoot } from './env.js';

export const TC_ACT_OK = 0;
export const TC_ACT_SHOT = 2;
export const TC_ACT_REDIRECT = 7;

export const PRIMARY = '10.240.0.4';
export const NIC_MAC = '00:0d:3a:00:00:04';
export const POD1 = { ip: '10.240.0.5', ifindex: 101, podMac: '02:00:00:00:05:01', hostMac: '02:00:00:00:05:02' };
export const POD2 = { ip: '10.240.0.6', ifindex: 102, podMac: '02:00:00:00:06:01', hostMac: '02:00:00:00:06:02' };
export const INTERNET = '203.0.113.10';
export const PEERED = '172.16.1.10';
export const VNET_HOST = '10.240.0.20';
export const WIRESERVER = '168.63.129.16';
/** eth_type_trans() in a test run compares the dst MAC with lo's (all zero): use it for packets "to this host". */
export const HOST_DST_MAC = '00:00:00:00:00:00';

export const baseConfig: EbpfConfig = {
  primaryIp: PRIMARY,
  nicIfindex: 2,
  nicMac: NIC_MAC,
  noSnatCidrs: ['10.240.0.0/16', '172.16.0.0/12'],
};

type Teardown = { teardown(fn: () => unknown): void };

export interface Fixture {
  dp: EbpfPrograms;
  ns: Netns;
  root: string;
  progs: { from_pod: BpfProgram; to_pod: BpfProgram; to_nic: BpfProgram; from_nic: BpfProgram };
  map(name: keyof typeof MAPS): BpfMap;
  run(prog: BpfProgram, data: Buffer, ingressIfindex?: number): Promise<TestRunResult>;
  /** Counter deltas since the previous call. */
  delta(): Record<string, number>;
}

export async function openFixture(t: Teardown, tag: string, cfg: Partial<EbpfConfig> = {}): Promise<Fixture> {
  await cleanupStale();
  await ensureBpffs();
  const root = pinRootFor(tag);
  const ns = await Netns.create(tag);
  t.teardown(() => ns.delete());
  t.teardown(() => removePinRoot(root));
  const dp = await EbpfPrograms.open(root, { ...baseConfig, ...cfg });
  t.teardown(() => dp.close());
  dp.setEndpoint(POD1.ip, POD1);
  dp.setEndpoint(POD2.ip, POD2);
  const open = (n: string): BpfProgram => native().openPinnedProgram(path.join(root, 'progs', n));
  const progs = { from_pod: open('from_pod'), to_pod: open('to_pod'), to_nic: open('to_nic'), from_nic: open('from_nic') };
  const maps: BpfMap[] = [];
  t.teardown(() => {
    for (const p of Object.values(progs)) p.close();
    for (const m of maps) m.close();
  });
  let last = dp.counters();
  return {
    dp,
    ns,
    root,
    progs,
    map(name) {
      const m = native().openPinnedMap(path.join(root, 'maps', MAPS[name]));
      maps.push(m);
      return m;
    },
    run(prog, data, ingressIfindex) {
      return prog.testRun({ data, netns: ns.path, ...(ingressIfindex ? { ctx: { ingressIfindex } } : {}) });
    },
    delta() {
      const now = dp.counters();
      const out: Record<string, number> = {};
      for (const [k, v] of Object.entries(now)) if (v !== last[k]) out[k] = Number(v - (last[k] ?? 0n));
      last = now;
      return out;
    },
  };
}
