// Every VnetError subclass control/errors.ts exports, thrown by the agent,
// comes out as the CNI error JSON carrying that class's cniCode. The table
// pins the codes we document; classes added later still get the dynamic check.
import t from 'tap';
import * as errors from '../../control/errors.js';
import { CniCode, VnetError } from '../../control/errors.js';
import { createLogger } from '../../control/log.js';
import { runPlugin } from '../../cni/skel.js';
import { fakeAgent } from './cni-fake-agent.js';

const EXPECTED: Record<string, number> = {
  VnetError: 999,
  InvalidConfigError: 7,
  InvalidEnvError: 4,
  IncompatibleVersionError: 1,
  DecodeError: 6,
  UnknownContainerError: 3,
  TryAgainError: 11,
  PoolExhaustedError: 100,
  PoolSourceError: 11,
  StoreError: 5,
  DataplaneUnavailableError: 101,
  DataplaneError: 999,
  UnsafeEnvironmentError: 50,
  NotReadyError: 50,
};

type ErrorCtor = new (message: string, options?: { details?: string }) => VnetError;

const classes = Object.entries(errors as Record<string, unknown>).filter(
  (entry): entry is [string, ErrorCtor] =>
    typeof entry[1] === 'function' && (entry[1] === VnetError || (entry[1] as { prototype: unknown }).prototype instanceof VnetError),
);

async function errorDocFor(err: unknown, command = 'ADD'): Promise<{ code: number; writes: number; doc: Record<string, unknown> }> {
  const out: string[] = [];
  const code = await runPlugin({
    plugin: 'azure-vnet',
    env: { CNI_COMMAND: command, CNI_CONTAINERID: 'e1', CNI_NETNS: '/proc/self/ns/net', CNI_IFNAME: 'eth0' },
    stdin: JSON.stringify({ cniVersion: '1.1.0', name: 'azure', type: 'azure-vnet' }),
    stdout: { write: (s: string) => out.push(s) },
    loggerFactory: () => createLogger({ name: 'test', level: 'silent' }),
    agentFactory: async () => fakeAgent(() => {}, { error: err as Error }),
  });
  return { code, writes: out.length, doc: JSON.parse(out.join('')) as Record<string, unknown> };
}

t.test('every error class maps to its cniCode', async (t) => {
  t.ok(classes.length >= Object.keys(EXPECTED).length, `found ${classes.length} classes`);
  for (const name of Object.keys(EXPECTED)) t.ok(classes.some(([n]) => n === name), `${name} is still exported`);
  const codes = new Set<number>(Object.values(CniCode));
  for (const [name, Ctor] of classes) {
    const err = new Ctor(`${name} happened`, { details: `details of ${name}` });
    t.ok(codes.has(err.cniCode), `${name}: cniCode ${err.cniCode} is a CniCode`);
    if (name in EXPECTED) t.equal(err.cniCode, EXPECTED[name], `${name}: documented code`);
    const { code, writes, doc } = await errorDocFor(err);
    t.equal(code, 1, `${name}: exit 1`);
    t.equal(writes, 1, `${name}: one write to stdout`);
    t.same(doc, { cniVersion: '1.1.0', code: err.cniCode, msg: `${name} happened`, details: `details of ${name}` }, `${name}: error JSON`);
  }
});

t.test('anything else thrown is an internal error (999) without details', async (t) => {
  const { doc } = await errorDocFor(new TypeError('x is undefined'));
  t.same(doc, { cniVersion: '1.1.0', code: 999, msg: 'x is undefined' });
  const str = await errorDocFor('a string');
  t.same(str.doc, { cniVersion: '1.1.0', code: 999, msg: 'a string' });
});

t.test('an agent factory that fails is reported, not thrown', async (t) => {
  const out: string[] = [];
  const code = await runPlugin({
    plugin: 'azure-vnet',
    env: { CNI_COMMAND: 'STATUS' },
    stdin: JSON.stringify({ cniVersion: '1.1.0', name: 'azure', type: 'azure-vnet' }),
    stdout: { write: (s: string) => out.push(s) },
    loggerFactory: () => createLogger({ name: 'test', level: 'silent' }),
    agentFactory: async () => {
      throw new errors.DataplaneUnavailableError('no eth0');
    },
  });
  t.equal(code, 1);
  t.same(JSON.parse(out.join('')), { cniVersion: '1.1.0', code: 101, msg: 'no eth0' });
});
