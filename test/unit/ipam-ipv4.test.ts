// The strict address parsers every IPAM input goes through.
import t from 'tap';
import { normaliseMac, parseCidr, parseIPv4, formatIPv4 } from '../../control/ipam/ipv4.js';

t.test('parseIPv4 accepts canonical dotted quads only', async (t) => {
  const good: [string, number][] = [
    ['0.0.0.0', 0],
    ['10.240.0.5', 0x0af00005],
    ['255.255.255.255', 0xffffffff],
    ['192.168.100.199', 0xc0a864c7],
  ];
  for (const [text, value] of good) {
    t.equal(parseIPv4(text), value, text);
    t.equal(formatIPv4(value), text, `${text} round trip`);
  }
  const bad = ['', '1.2.3', '1.2.3.4.5', '01.2.3.4', '1.2.3.04', '1.2.3.256', '1000.1.1.1', '1..2.3', '.1.2.3', '1.2.3.', ' 1.2.3.4', '1.2.3.4 ', 'a.b.c.d', '::1', '1.2.3.4/32', '１.2.3.4'];
  for (const text of bad) t.equal(parseIPv4(text), undefined, JSON.stringify(text));
});

t.test('parseCidr clears host bits and bounds the prefix', async (t) => {
  t.same(parseCidr('10.240.0.4/16'), { network: 0x0af00000, prefixLength: 16, text: '10.240.0.0/16' });
  t.same(parseCidr('0.0.0.0/0')?.text, '0.0.0.0/0');
  t.same(parseCidr('10.1.2.3/32')?.text, '10.1.2.3/32');
  for (const text of ['10.0.0.0', '10.0.0.0/33', '10.0.0.0/-1', '10.0.0.0/016', '10.0.0.0/', 'fd00::/64', '10.0.0/8']) {
    t.equal(parseCidr(text), undefined, text);
  }
});

t.test('normaliseMac accepts the usual spellings', async (t) => {
  for (const text of ['000D3AF9DCA6', '000d3af9dca6', '00:0D:3A:F9:DC:A6', '00-0d-3a-f9-dc-a6']) {
    t.equal(normaliseMac(text), '00:0d:3a:f9:dc:a6', text);
  }
  for (const text of ['', '000D3AF9DCA', '000D3AF9DCA6F', '00:0D-3A:F9:DC:A6', '00:0D:3A:F9:DC', 'GG0D3AF9DCA6', '0:d:3a:f9:dc:a6']) {
    t.equal(normaliseMac(text), undefined, JSON.stringify(text));
  }
});
