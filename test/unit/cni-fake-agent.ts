// A fake AgentApi for the cni/ tests. In-process tests use `fakeAgent()`;
// the real bin/azure-vnet loads this module through VNET_CNI_TEST_AGENT and
// its `createAgent`, which is steered by env vars only tests set:
//   VNET_CNI_FAKE_LOG    file to append one JSON line per agent call
//   VNET_CNI_FAKE_ERROR  '<ErrorClassName>:<message>' makes every verb throw it
//   VNET_CNI_FAKE_NOISE  '1' makes every verb print junk on stdout (console.log
//                        and process.stdout.write): the plugin must divert it
import fs from 'node:fs';
import * as errors from '../../control/errors.js';
import type { AgentApi, Attachment, CniCall, CniResult, NetConf } from '../../control/types.js';

/** The fixed result every ADD returns: internal (1.1.0) shape, second IP without an interface index. */
export const FIXED_RESULT: CniResult = {
  cniVersion: '1.1.0',
  interfaces: [
    { name: 'azv5f1c0a2b3', mac: 'aa:aa:aa:00:00:01' },
    { name: 'eth0', mac: 'aa:aa:aa:00:00:02', mtu: 1500, sandbox: '/var/run/netns/fake' },
  ],
  ips: [{ address: '10.240.0.5/16', gateway: '10.240.0.1', interface: 1 }, { address: '10.240.0.6/16' }],
  routes: [{ dst: '0.0.0.0/0', gw: '10.240.0.1' }],
  dns: { nameservers: ['168.63.129.16'], search: ['default.svc.cluster.local'] },
};

/** What ipamAdd returns: addresses only, no interfaces. */
export const FIXED_IPAM_RESULT: CniResult = {
  cniVersion: '1.1.0',
  ips: [{ address: '10.240.0.7/16', gateway: '10.240.0.1' }],
  routes: [{ dst: '0.0.0.0/0', gw: '10.240.0.1' }],
};

export type FakeCall =
  | { method: 'add' | 'del' | 'check' | 'ipamAdd' | 'ipamDel'; call: CniCall }
  | { method: 'gc'; config: NetConf; valid: Attachment[] }
  | { method: 'status'; config: NetConf }
  | { method: 'factory'; config: NetConf }
  | { method: 'close' };

export interface FakeOptions {
  /** Thrown by every verb. */
  error?: Error;
  /** Print junk on stdout inside every verb. */
  noise?: boolean;
  result?: CniResult;
}

export function fakeAgent(record: (c: FakeCall) => void, options: FakeOptions = {}): AgentApi {
  const verb = async <T>(c: FakeCall, value: T): Promise<T> => {
    record(c);
    if (options.noise) {
      console.log('noise from console.log');
      process.stdout.write('noise from process.stdout.write\n');
    }
    if (options.error) throw options.error;
    return value;
  };
  return {
    add: (call) => verb({ method: 'add', call }, options.result ?? FIXED_RESULT),
    del: (call) => verb({ method: 'del', call }, undefined),
    check: (call) => verb({ method: 'check', call }, undefined),
    gc: (config, valid) => verb({ method: 'gc', config, valid }, undefined),
    status: (config) => verb({ method: 'status', config }, undefined),
    ipamAdd: (call) => verb({ method: 'ipamAdd', call }, options.result ?? FIXED_IPAM_RESULT),
    ipamDel: (call) => verb({ method: 'ipamDel', call }, undefined),
    close: async () => record({ method: 'close' }),
  };
}

function errorFromEnv(spec: string | undefined): Error | undefined {
  if (!spec) return undefined;
  const colon = spec.indexOf(':');
  const name = colon === -1 ? spec : spec.slice(0, colon);
  const message = colon === -1 ? 'fake failure' : spec.slice(colon + 1);
  const Ctor = (errors as Record<string, unknown>)[name];
  if (typeof Ctor !== 'function') return new Error(message);
  return new (Ctor as new (m: string) => Error)(message);
}

/** The VNET_CNI_TEST_AGENT entry point (same signature as control/agent's createAgent). */
export async function createAgent(config: NetConf): Promise<AgentApi> {
  const logFile = process.env.VNET_CNI_FAKE_LOG;
  const record = (c: FakeCall): void => {
    if (logFile) fs.appendFileSync(logFile, `${JSON.stringify(c)}\n`);
  };
  record({ method: 'factory', config });
  const options: FakeOptions = { noise: process.env.VNET_CNI_FAKE_NOISE === '1' };
  const error = errorFromEnv(process.env.VNET_CNI_FAKE_ERROR);
  if (error) options.error = error;
  return fakeAgent(record, options);
}
