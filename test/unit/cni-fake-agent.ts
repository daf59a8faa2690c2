// A fake AgentApi for the cni/ tests: in-process tests call `fakeAgent()`;
// tests that need a plugin process run test/support/fake-plugin.ts, the
// test-only entry that puts this agent behind the real CNI front end.
import * as errors from '../../cni/errors.js';
import type { AgentApi, Attachment, CniCall, CniResult, NetConf } from '../../cni/types.js';

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

/** '<ErrorClassName>:<message>' -> that error (a plain Error for an unknown class name). */
export function errorFromSpec(spec: string | undefined): Error | undefined {
  if (!spec) return undefined;
  const colon = spec.indexOf(':');
  const name = colon === -1 ? spec : spec.slice(0, colon);
  const message = colon === -1 ? 'fake failure' : spec.slice(colon + 1);
  const Ctor = (errors as Record<string, unknown>)[name];
  if (typeof Ctor !== 'function') return new Error(message);
  return new (Ctor as new (m: string) => Error)(message);
}
