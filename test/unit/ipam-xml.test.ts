// The wireserver XML reader and the document -> NicPool conversion: the exact
// Azure example, several NICs and subnets, and hostile documents that must all
// end in a PoolSourceError (CNI code 11) instead of a hang or a blow-up.
import t, { type Test } from 'tap';
import { PoolSourceError, CniCode } from '../../control/errors.js';
import { parseInterfacesXml } from '../../control/ipam/nmagent-xml.js';
import { poolsFromInterfaces } from '../../control/ipam/interfaces-doc.js';
import { selectNic } from '../../control/ipam/select-nic.js';
import type { NicPool } from '../../control/ipam/types.js';

const ORIGIN = 'wireserver http://test/';
const pools = (xml: string): NicPool[] => poolsFromInterfaces(parseInterfacesXml(xml, ORIGIN), ORIGIN);

const AZURE_EXAMPLE = `<Interfaces>
  <Interface MacAddress="000D3AF9DCA6" IsPrimary="true">
    <IPSubnet Prefix="10.240.0.0/16">
      <IPAddress Address="10.240.0.4" IsPrimary="true"/>
      <IPAddress Address="10.240.0.5" IsPrimary="false"/>
    </IPSubnet>
  </Interface>
</Interfaces>
`;

function expectSourceError(t: Test, fn: () => unknown, message: RegExp): void {
  try {
    fn();
    t.fail(`expected a PoolSourceError matching ${message}`);
  } catch (err) {
    t.ok(err instanceof PoolSourceError, `PoolSourceError, got ${(err as Error).name}: ${(err as Error).message}`);
    t.equal((err as PoolSourceError).cniCode, CniCode.TryAgainLater);
    t.match((err as Error).message, message);
    t.ok((err as Error).message.length < 400, 'message stays short');
  }
}

t.test('the exact Azure example', async (t) => {
  t.same(pools(AZURE_EXAMPLE), [
    {
      mac: '00:0d:3a:f9:dc:a6',
      primaryIp: '10.240.0.4',
      subnet: '10.240.0.0/16',
      prefixLength: 16,
      gateway: '10.240.0.1',
      addresses: ['10.240.0.5'],
    },
  ]);
});

t.test('XML declaration, BOM, comments, single quotes, predefined entities, unknown attributes', async (t) => {
  const xml =
    "\uFEFF<?xml version='1.0' encoding='utf-8'?>\r\n<!-- nmagent -->" +
    `<Interfaces><Interface MacAddress='000D3AF9DCA6' IsPrimary="True" Extra="a &amp; b">` +
    `<IPSubnet Prefix="10.240.0.0/16"><!-- pool --><IPAddress Address="10.240.0.4" IsPrimary="1"></IPAddress>` +
    `<IPAddress Address="10.240.0.9"/><IPAddress Address="10.240.0.7" IsPrimary="F"/>` +
    `</IPSubnet></Interface></Interfaces>`;
  const [pool] = pools(xml);
  t.equal(pool?.primaryIp, '10.240.0.4');
  t.same(pool?.addresses, ['10.240.0.7', '10.240.0.9'], 'ascending; IsPrimary absent means false');
});

t.test('several NICs and subnets; primaries skipped; duplicates collapse', async (t) => {
  const xml = `<Interfaces>
    <Interface MacAddress="000D3AF9DCA6" IsPrimary="true">
      <IPSubnet Prefix="10.240.0.0/16">
        <IPAddress Address="10.240.0.4" IsPrimary="true"/>
        <IPAddress Address="10.240.0.6" IsPrimary="false"/>
        <IPAddress Address="10.240.0.5" IsPrimary="false"/>
        <IPAddress Address="10.240.0.6" IsPrimary="false"/>
      </IPSubnet>
      <IPSubnet Prefix="10.241.0.7/24">
        <IPAddress Address="10.241.0.20" IsPrimary="false"/>
      </IPSubnet>
    </Interface>
    <Interface MacAddress="000D3AF9DCA7" IsPrimary="false">
      <IPSubnet Prefix="192.168.4.0/22">
        <IPAddress Address="192.168.4.4" IsPrimary="true"/>
        <IPAddress Address="192.168.5.255" IsPrimary="false"/>
      </IPSubnet>
    </Interface>
    <Interface MacAddress="000D3AF9DCA8" IsPrimary="false"/>
  </Interfaces>`;
  const result = pools(xml);
  t.same(
    result.map((p) => [p.mac, p.subnet, p.primaryIp, p.gateway, p.addresses]),
    [
      ['00:0d:3a:f9:dc:a6', '10.240.0.0/16', '10.240.0.4', '10.240.0.1', ['10.240.0.5', '10.240.0.6']],
      ['00:0d:3a:f9:dc:a6', '10.241.0.0/24', '', '10.241.0.1', ['10.241.0.20']],
      ['00:0d:3a:f9:dc:a7', '192.168.4.0/22', '192.168.4.4', '192.168.4.1', ['192.168.5.255']],
    ],
  );
  t.equal(selectNic(result, '00:0D:3A:F9:DC:A7').subnet, '192.168.4.0/22', 'colon MAC, any case');
  t.equal(selectNic(result, '000d3af9dca6').subnet, '10.240.0.0/16', 'the subnet holding the primary address wins');
  t.equal(selectNic(result, '00-0d-3a-f9-dc-a6').primaryIp, '10.240.0.4', 'dash MAC');
  expectSourceError(t, () => selectNic(result, '02:00:00:00:00:01'), /no pool for NIC 02:00:00:00:00:01.*00:0d:3a:f9:dc:a6, 00:0d:3a:f9:dc:a7/);
});

t.test('empty <Interfaces/> is a valid document with no pools', async (t) => {
  t.same(pools('<Interfaces/>'), []);
  expectSourceError(t, () => selectNic([], '00:0d:3a:f9:dc:a6'), /lists no interfaces/);
});

t.test('hostile and broken documents', async (t) => {
  const element = (inner: string): string =>
    `<Interfaces><Interface MacAddress="000D3AF9DCA6" IsPrimary="true"><IPSubnet Prefix="10.240.0.0/16">${inner}</IPSubnet></Interface></Interfaces>`;
  const cases: [string, string, RegExp][] = [
    ['DOCTYPE', `<?xml version="1.0"?><!DOCTYPE Interfaces [<!ENTITY a "aaaa">]>${AZURE_EXAMPLE}`, /DOCTYPE.*not allowed/],
    ['ENTITY', `<!ENTITY x SYSTEM "file:///etc/passwd">${AZURE_EXAMPLE}`, /ENTITY.*not allowed/],
    ['CDATA', element('<![CDATA[x]]>'), /CDATA.*not allowed/],
    ['external entity reference', element('<IPAddress Address="&xxe;"/>'), /entity reference "&xxe;" is not allowed/],
    ['numeric character reference', element('<IPAddress Address="10.240.0.&#53;"/>'), /entity reference .* is not allowed/],
    ['processing instruction', `<Interfaces><?php evil ?></Interfaces>`, /processing instructions/],
    ['truncated mid-document', AZURE_EXAMPLE.slice(0, 150), /truncated/],
    ['truncated inside a tag', AZURE_EXAMPLE.slice(0, 40), /truncated/],
    ['truncated inside an attribute', '<Interfaces><Interface MacAddress="000D3A', /unterminated \(truncated\?\)/],
    ['empty body', '', /no <Interfaces> element/],
    ['HTML error page', '<html><body>Service Unavailable</body></html>', /root element is <html>/],
    ['plain text', 'Service Unavailable', /unexpected text "Service Unavailable"/],
    ['JSON', '{"Interfaces":[]}', /unexpected text/],
    ['mismatched close', '<Interfaces><Interface MacAddress="000D3AF9DCA6"></IPSubnet></Interfaces>', /<\/IPSubnet> does not close <Interface>/],
    ['stray close', '<Interfaces/></Interfaces>', /closes nothing/],
    ['second root', '<Interfaces/><Interfaces/>', /second root/],
    ['text inside an element', element('hello'), /unexpected text "hello"/],
    ['unknown element', element('<Foo/>'), /unexpected element <Foo> inside <IPSubnet>/],
    ['children under IPAddress', element('<IPAddress Address="10.240.0.5"><IPAddress Address="10.240.0.6"/></IPAddress>'), /unexpected element <IPAddress> inside <IPAddress>/],
    ['unquoted attribute', '<Interfaces><Interface MacAddress=000D3AF9DCA6/></Interfaces>', /not quoted/],
    ['attributes run together', '<Interfaces><Interface MacAddress="000D3AF9DCA6"IsPrimary="true"/></Interfaces>', /expected whitespace/],
    ['repeated attribute', '<Interfaces><Interface MacAddress="000D3AF9DCA6" MacAddress="000D3AF9DCA7"/></Interfaces>', /repeats attribute MacAddress/],
    ['missing MacAddress', '<Interfaces><Interface IsPrimary="true"/></Interfaces>', /lacks the MacAddress attribute/],
    ['missing Address', element('<IPAddress IsPrimary="false"/>'), /lacks the Address attribute/],
    ['bad boolean', element('<IPAddress Address="10.240.0.5" IsPrimary="yes"/>'), /IsPrimary="yes" is not a boolean/],
    ['bad MAC', '<Interfaces><Interface MacAddress="000D3AF9DCZZ"><IPSubnet Prefix="10.0.0.0/24"/></Interface></Interfaces>', /Interface\[0\]: MacAddress "000D3AF9DCZZ" is not a MAC address/],
    ['short MAC', '<Interfaces><Interface MacAddress="000D3A"/></Interfaces>', /MacAddress "000D3A" is not a MAC address/],
    ['bad CIDR', '<Interfaces><Interface MacAddress="000D3AF9DCA6"><IPSubnet Prefix="10.240.0.0/33"/></Interface></Interfaces>', /Prefix "10.240.0.0\/33" is not an IPv4 CIDR/],
    ['IPv6 prefix', '<Interfaces><Interface MacAddress="000D3AF9DCA6"><IPSubnet Prefix="fd00::/64"/></Interface></Interfaces>', /is not an IPv4 CIDR/],
    ['subnet too small', '<Interfaces><Interface MacAddress="000D3AF9DCA6"><IPSubnet Prefix="10.0.0.0/31"/></Interface></Interfaces>', /too small/],
    ['bad address', element('<IPAddress Address="10.240.0.256"/>'), /IPAddress\[0\]: Address "10.240.0.256" is not an IPv4 address/],
    ['leading-zero address', element('<IPAddress Address="10.240.0.05"/>'), /is not an IPv4 address/],
    ['address outside the subnet', element('<IPAddress Address="10.241.0.5"/>'), /10.241.0.5 is outside 10.240.0.0\/16/],
    ['gateway in the pool', element('<IPAddress Address="10.240.0.1"/>'), /network, gateway or broadcast/],
    ['broadcast in the pool', element('<IPAddress Address="10.240.255.255"/>'), /network, gateway or broadcast/],
    ['overlong attribute', element(`<IPAddress Address="${'1'.repeat(10_000)}"/>`), /too long/],
    ['overlong name', `<Interfaces><${'A'.repeat(10_000)}/></Interfaces>`, /name longer than 64/],
    ['too many attributes', `<Interfaces><Interface ${Array.from({ length: 40 }, (_, i) => `a${i}="x"`).join(' ')}/></Interfaces>`, /more than 32 attributes/],
  ];
  for (const [name, xml, message] of cases) {
    t.test(name, async (t) => expectSourceError(t, () => pools(xml), message));
  }
});

t.test('10,000-deep nesting fails at the schema/depth limit', async (t) => {
  const depth = 10_000;
  expectSourceError(t, () => pools('<Interfaces>'.repeat(depth) + '</Interfaces>'.repeat(depth)), /unexpected element <Interfaces> inside <Interfaces>/);
  // Generic names never reach the schema's depth: the root check stops them.
  expectSourceError(t, () => pools('<a>'.repeat(depth) + '</a>'.repeat(depth)), /root element is <a>/);
});

t.test('a 2 MiB document is refused before it is scanned', async (t) => {
  const body = `<Interfaces>${' '.repeat(2 * 1024 * 1024)}</Interfaces>`;
  expectSourceError(t, () => pools(body), /larger than 1048576 characters/);
});

t.test('a million "<" fails on the first one', async (t) => {
  expectSourceError(t, () => pools('<'.repeat(1_000_000)), /expected a name/);
});

t.test('errors name where they happened', async (t) => {
  expectSourceError(
    t,
    () => pools(AZURE_EXAMPLE.replace('10.240.0.5', '10.240.0.x')),
    /^wireserver http:\/\/test\/: Interface\[0\] IPSubnet\[0\] IPAddress\[1\]: Address "10.240.0.x"/,
  );
});
