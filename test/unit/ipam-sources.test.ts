// The fileIpam (interfaces.json), static and kubernetes sources, and
// createPoolSource's choice and config errors.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { CniCode, InvalidConfigError, PoolSourceError, VnetError } from '../../control/errors.js';
import { createPoolSource, selectNic, ANY_MAC } from '../../control/ipam/index.js';
import { DEFAULT_INTERFACES_FILE } from '../../control/ipam/file-source.js';
import type { IpamConfig } from '../../control/types.js';

const BASE: Omit<IpamConfig, 'environment'> = {
  type: 'azure-vnet-ipam',
  wireserverUrl: 'http://168.63.129.16',
  wireserverTimeoutMs: 1_000,
};

const INTERFACES_JSON = {
  Interfaces: [
    {
      MacAddress: '000D3AF9DCA6',
      IsPrimary: true,
      IPSubnets: [
        {
          Prefix: '10.240.0.0/16',
          IPAddresses: [
            { Address: '10.240.0.4', IsPrimary: true },
            { Address: '10.240.0.5', IsPrimary: false },
            { Address: '10.240.0.6', IsPrimary: false },
          ],
        },
      ],
    },
    { MacAddress: '000D3AF9DCA7', IsPrimary: false, IPSubnets: null },
  ],
};

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `vnet-ipam-test-${process.pid}-`));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function fileSource(t: Test, content: string | Buffer) {
  const file = path.join(await tempDir(t), 'interfaces.json');
  await writeFile(file, content);
  return { file, source: createPoolSource({ ...BASE, environment: 'fileIpam', interfacesFile: file }) };
}

async function expectError(t: Test, promise: Promise<unknown>, type: typeof VnetError, code: number, message: RegExp): Promise<void> {
  try {
    await promise;
    t.fail(`expected ${type.name} matching ${message}`);
  } catch (err) {
    t.ok(err instanceof type, `${type.name}, got ${(err as Error).name}: ${(err as Error).message}`);
    t.equal((err as VnetError).cniCode, code);
    t.match((err as Error).message, message);
  }
}

t.test('fileIpam: the Azure interfaces.json format', async (t) => {
  const { source } = await fileSource(t, JSON.stringify(INTERFACES_JSON, null, 2));
  t.equal(source.kind, 'fileIpam');
  const pools = await source.fetch();
  t.same(pools, [
    { mac: '00:0d:3a:f9:dc:a6', primaryIp: '10.240.0.4', subnet: '10.240.0.0/16', prefixLength: 16, gateway: '10.240.0.1', addresses: ['10.240.0.5', '10.240.0.6'] },
  ]);
  t.equal(selectNic(pools, '00:0d:3a:f9:dc:a6').primaryIp, '10.240.0.4');
});

t.test('fileIpam: keys match case-insensitively, unknown keys are ignored, "*" matches any NIC', async (t) => {
  const doc = {
    interfaces: [
      {
        macaddress: '*',
        isPrimary: true,
        comment: 'hand written',
        ipsubnets: [{ prefix: '172.16.8.0/24', ipaddresses: [{ address: '172.16.8.10', isprimary: true }, { address: '172.16.8.11' }] }],
      },
    ],
  };
  const { source } = await fileSource(t, JSON.stringify(doc));
  const pool = selectNic(await source.fetch(), '02:42:ac:11:00:02');
  t.equal(pool.mac, ANY_MAC);
  t.same(pool.addresses, ['172.16.8.11']);
});

t.test('fileIpam: the file is re-read on every fetch', async (t) => {
  const { file, source } = await fileSource(t, JSON.stringify(INTERFACES_JSON));
  t.same((await source.fetch())[0]?.addresses, ['10.240.0.5', '10.240.0.6']);
  const grown = structuredClone(INTERFACES_JSON);
  grown.Interfaces[0]!.IPSubnets![0]!.IPAddresses.push({ Address: '10.240.0.7', IsPrimary: false });
  await writeFile(file, JSON.stringify(grown));
  t.same((await source.fetch())[0]?.addresses, ['10.240.0.5', '10.240.0.6', '10.240.0.7']);
});

t.test('fileIpam: bad files are PoolSourceErrors naming the file', async (t) => {
  const cases: [string, string | Buffer, RegExp][] = [
    ['not JSON', '<Interfaces/>', /interfaces file .*interfaces\.json: not valid JSON/],
    ['truncated JSON', JSON.stringify(INTERFACES_JSON).slice(0, 60), /not valid JSON/],
    ['top-level array', '[]', /document: expected an object/],
    ['Interfaces not a list', '{"Interfaces": {}}', /Interfaces: expected an array/],
    ['IsPrimary as a string', '{"Interfaces":[{"MacAddress":"000D3AF9DCA6","IsPrimary":"true"}]}', /Interfaces\[0\]\.IsPrimary: expected true or false/],
    ['MacAddress missing', '{"Interfaces":[{"IPSubnets":[]}]}', /Interfaces\[0\]\.MacAddress: expected a string/],
    ['bad MAC', '{"Interfaces":[{"MacAddress":"nope"}]}', /MacAddress "nope" is not a MAC address/],
    ['bad prefix', '{"Interfaces":[{"MacAddress":"000D3AF9DCA6","IPSubnets":[{"Prefix":"10.0.0.0"}]}]}', /Prefix "10.0.0.0" is not an IPv4 CIDR/],
    ['address outside subnet', '{"Interfaces":[{"MacAddress":"000D3AF9DCA6","IPSubnets":[{"Prefix":"10.0.0.0/24","IPAddresses":[{"Address":"10.0.1.5"}]}]}]}', /outside 10.0.0.0\/24/],
    ['deep nesting', '['.repeat(100_000) + ']'.repeat(100_000), /interfaces file .*: (not valid JSON|document: expected an object)/],
    ['invalid UTF-8', Buffer.from([0x7b, 0xff, 0x7d]), /cannot read: .*(encoded|UTF-8|decode)/i],
    ['over 1 MiB', Buffer.alloc(2 * 1024 * 1024, 0x20), /larger than the 1048576-byte limit/],
  ];
  for (const [name, content, message] of cases) {
    t.test(name, async (t) => {
      const { source } = await fileSource(t, content);
      await expectError(t, source.fetch(), PoolSourceError, CniCode.TryAgainLater, message);
    });
  }
  t.test('missing file', async (t) => {
    const file = path.join(await tempDir(t), 'absent.json');
    const source = createPoolSource({ ...BASE, environment: 'fileIpam', interfacesFile: file });
    await expectError(t, source.fetch(), PoolSourceError, CniCode.TryAgainLater, /absent\.json: cannot open: ENOENT/);
  });
});

t.test('fileIpam: default path is /etc/kubernetes/interfaces.json', async (t) => {
  const source = createPoolSource({ ...BASE, environment: 'fileIpam' }) as { file?: string };
  t.equal(source.file, DEFAULT_INTERFACES_FILE);
});

t.test('static: addresses + subnet [+ gateway]', async (t) => {
  const source = createPoolSource({ ...BASE, environment: 'static', subnet: '10.9.0.0/24', addresses: ['10.9.0.12', '10.9.0.10', '10.9.0.11', '10.9.0.10'] });
  t.equal(source.kind, 'static');
  const pools = await source.fetch();
  t.same(pools, [{ mac: ANY_MAC, primaryIp: '', subnet: '10.9.0.0/24', prefixLength: 24, gateway: '10.9.0.1', addresses: ['10.9.0.10', '10.9.0.11', '10.9.0.12'] }]);
  t.equal(selectNic(pools, 'aa:bb:cc:dd:ee:ff').subnet, '10.9.0.0/24', 'a static pool fits any NIC');

  const withGateway = createPoolSource({ ...BASE, environment: 'static', subnet: '10.9.0.0/24', gateway: '10.9.0.254', addresses: ['10.9.0.1'] });
  t.same((await withGateway.fetch())[0], { mac: ANY_MAC, primaryIp: '', subnet: '10.9.0.0/24', prefixLength: 24, gateway: '10.9.0.254', addresses: ['10.9.0.1'] });
});

t.test('static: config mistakes are InvalidConfigError (code 7) at creation', async (t) => {
  const cases: [Partial<IpamConfig>, RegExp][] = [
    [{ addresses: ['10.9.0.10'] }, /"subnet" is required/],
    [{ subnet: '10.9.0.0/24' }, /"addresses" must be a non-empty list/],
    [{ subnet: '10.9.0.0/24', addresses: [] }, /"addresses" must be a non-empty list/],
    [{ subnet: '10.9.0.0', addresses: ['10.9.0.10'] }, /subnet "10.9.0.0" is not an IPv4 CIDR/],
    [{ subnet: '10.9.0.0/32', addresses: ['10.9.0.10'] }, /too small/],
    [{ subnet: '10.9.0.0/24', addresses: ['10.9.0.300'] }, /address "10.9.0.300" is not an IPv4 address/],
    [{ subnet: '10.9.0.0/24', addresses: ['10.9.1.10'] }, /address 10.9.1.10 is outside 10.9.0.0\/24/],
    [{ subnet: '10.9.0.0/24', addresses: ['10.9.0.1'] }, /network, gateway or broadcast/],
    [{ subnet: '10.9.0.0/24', addresses: ['10.9.0.255'] }, /network, gateway or broadcast/],
    [{ subnet: '10.9.0.0/24', addresses: ['10.9.0.10'], gateway: '10.9.1.1' }, /gateway "10.9.1.1" is not a host address/],
    [{ subnet: '10.9.0.0/24', addresses: ['10.9.0.10'], gateway: '10.9.0.10' }, /network, gateway or broadcast/],
  ];
  for (const [cfg, message] of cases) {
    await expectError(t, (async () => createPoolSource({ ...BASE, environment: 'static', ...cfg }))(), InvalidConfigError, CniCode.InvalidConfig, message);
  }
});

t.test('kubernetes without the daemon says the daemon is required; unknown environments are config errors', async (t) => {
  const k8s = createPoolSource({ ...BASE, environment: 'kubernetes' });
  t.equal(k8s.kind, 'kubernetes');
  await expectError(t, k8s.fetch(), PoolSourceError, CniCode.TryAgainLater, /ipam.environment "kubernetes" needs the node daemon .*daemonSocket/);
  await expectError(
    t,
    (async () => createPoolSource({ ...BASE, environment: 'mas' as IpamConfig['environment'] }))(),
    InvalidConfigError,
    CniCode.InvalidConfig,
    /ipam.environment "mas" is not one of azure, fileIpam, static, kubernetes/,
  );
});

t.test('selectNic rejects a malformed MAC argument', async (t) => {
  t.throws(() => selectNic([], 'zz:zz'), InvalidConfigError);
});
