// The azure pool source against a real HTTP wireserver stand-in on 127.0.0.1:
// a good answer, and every way the wireserver can fail (down, slow, trickling,
// garbage, 500, oversized, cut off) ends in a PoolSourceError naming the URL.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { CniCode, InvalidConfigError, PoolSourceError } from '../../control/errors.js';
import { createPoolSource, selectNic } from '../../control/ipam/index.js';
import { INTERFACE_INFO_PATH, WireserverSource, interfaceInfoUrl } from '../../control/ipam/wireserver.js';
import type { IpamConfig } from '../../control/types.js';

const AZURE_EXAMPLE = `<Interfaces>
  <Interface MacAddress="000D3AF9DCA6" IsPrimary="true">
    <IPSubnet Prefix="10.240.0.0/16">
      <IPAddress Address="10.240.0.4" IsPrimary="true"/>
      <IPAddress Address="10.240.0.5" IsPrimary="false"/>
    </IPSubnet>
  </Interface>
</Interfaces>
`;

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** A wireserver stand-in on an ephemeral loopback port, closed when the test ends. */
async function standIn(t: Test, handler: Handler): Promise<{ base: string; requests: string[] }> {
  const requests: string[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const server = http.createServer((req, res) => {
    requests.push(req.url ?? '');
    handler(req, res);
  });
  t.teardown(() => {
    for (const timer of timers) clearInterval(timer);
    server.closeAllConnections();
    server.close();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  trackedTimers.set(t, timers);
  return { base: `http://127.0.0.1:${port}`, requests };
}
const trackedTimers = new WeakMap<Test, Set<NodeJS.Timeout>>();

async function expectSourceError(t: Test, promise: Promise<unknown>, message: RegExp): Promise<void> {
  try {
    await promise;
    t.fail(`expected a PoolSourceError matching ${message}`);
  } catch (err) {
    t.ok(err instanceof PoolSourceError, `PoolSourceError, got ${(err as Error).name}: ${(err as Error).message}`);
    t.equal((err as PoolSourceError).cniCode, CniCode.TryAgainLater, 'CNI code 11 (try again later)');
    t.match((err as Error).message, message);
  }
}

const source = (base: string, timeoutMs = 2_000): WireserverSource => new WireserverSource(base, timeoutMs);

t.test('a good answer becomes the NIC pool; the standard query path is used', async (t) => {
  const ws = await standIn(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/xml; charset=utf-8' });
    res.end(AZURE_EXAMPLE);
  });
  const pools = await source(ws.base).fetch();
  t.same(selectNic(pools, '00:0d:3a:f9:dc:a6'), {
    mac: '00:0d:3a:f9:dc:a6',
    primaryIp: '10.240.0.4',
    subnet: '10.240.0.0/16',
    prefixLength: 16,
    gateway: '10.240.0.1',
    addresses: ['10.240.0.5'],
  });
  t.same(ws.requests, [INTERFACE_INFO_PATH]);
});

t.test('createPoolSource(azure) reaches the configured wireserver', async (t) => {
  const ws = await standIn(t, (_req, res) => res.end(AZURE_EXAMPLE));
  const cfg: IpamConfig = { type: 'azure-vnet-ipam', environment: 'azure', wireserverUrl: ws.base, wireserverTimeoutMs: 2_000 };
  const pool = createPoolSource(cfg);
  t.equal(pool.kind, 'azure');
  t.same((await pool.fetch()).map((p) => p.addresses), [['10.240.0.5']]);
});

t.test('a URL with its own path is used as given', async (t) => {
  t.equal(interfaceInfoUrl('http://168.63.129.16').href, `http://168.63.129.16${INTERFACE_INFO_PATH}`);
  t.equal(interfaceInfoUrl('http://168.63.129.16/').href, `http://168.63.129.16${INTERFACE_INFO_PATH}`);
  t.equal(interfaceInfoUrl('http://10.0.0.1:8080/x?y=1').href, 'http://10.0.0.1:8080/x?y=1');
  t.throws(() => interfaceInfoUrl('not a url'), InvalidConfigError);
  t.throws(() => interfaceInfoUrl('ftp://168.63.129.16'), InvalidConfigError);
  t.throws(() => new WireserverSource('http://168.63.129.16', 0), InvalidConfigError);
  const ws = await standIn(t, (req, res) => res.end(req.url === '/custom?q=1' ? AZURE_EXAMPLE : 'wrong path'));
  t.equal((await source(`${ws.base}/custom?q=1`).fetch()).length, 1);
});

t.test('down: connection refused', async (t) => {
  const probe = http.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  await expectSourceError(t, source(`http://127.0.0.1:${port}`).fetch(), new RegExp(`^wireserver http://127.0.0.1:${port}/machine/plugins.*ECONNREFUSED`));
});

t.test('slow: accepts but never answers -> the total timeout fires', async (t) => {
  const ws = await standIn(t, () => {
    /* never respond */
  });
  await expectSourceError(t, source(ws.base, 300).fetch(), /^wireserver http:\/\/127\.0\.0\.1:\d+\/machine\/plugins\?comp=nmagent&type=getinterfaceinfov1: no complete answer within 300 ms/);
});

t.test('slow: headers at once, body trickling forever -> the total timeout still fires', async (t) => {
  const ws = await standIn(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/xml' });
    res.write('<Interfaces>');
    let ticks = 0;
    const timer = setInterval(() => {
      if (++ticks > 500 || res.destroyed) return clearInterval(timer); // bounded: 500 x 20 ms at most
      res.write(' ');
    }, 20);
    trackedTimers.get(t)?.add(timer);
  });
  await expectSourceError(t, source(ws.base, 300).fetch(), /no complete answer within 300 ms/);
});

t.test('garbage bodies', async (t) => {
  const bodies: [string, string | Buffer, RegExp][] = [
    ['plain text', 'Service Unavailable', /unexpected text "Service Unavailable"/],
    ['HTML', '<html><body>oops</body></html>', /root element is <html>/],
    ['empty', '', /no <Interfaces> element/],
    ['truncated XML', AZURE_EXAMPLE.slice(0, 120), /truncated/],
    ['DOCTYPE', `<!DOCTYPE x [<!ENTITY a "b">]>${AZURE_EXAMPLE}`, /DOCTYPE.*not allowed/],
    ['invalid UTF-8', Buffer.from([0x3c, 0xff, 0xfe, 0x3e]), /not valid UTF-8/],
    ['random bytes', Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) % 256)), /wireserver http:\/\/127\.0\.0\.1/],
  ];
  for (const [name, body, message] of bodies) {
    t.test(name, async (t) => {
      const ws = await standIn(t, (_req, res) => res.end(body));
      await expectSourceError(t, source(ws.base).fetch(), message);
    });
  }
});

t.test('HTTP errors: 500, 404, a redirect (not followed)', async (t) => {
  for (const [status, message] of [
    [500, /HTTP 500 Internal Server Error$/],
    [404, /HTTP 404 Not Found$/],
    [302, /HTTP 302 Found$/],
  ] as const) {
    t.test(String(status), async (t) => {
      const ws = await standIn(t, (_req, res) => {
        res.writeHead(status, status === 302 ? { location: '/elsewhere' } : {});
        res.end(AZURE_EXAMPLE);
      });
      await expectSourceError(t, source(ws.base).fetch(), message);
      t.equal(ws.requests.length, 1, 'one request, no retry or redirect');
    });
  }
});

t.test('2 MiB body: refused by Content-Length, or cut off while streaming', async (t) => {
  const twoMiB = Buffer.alloc(2 * 1024 * 1024, 0x20);
  t.test('declared length', async (t) => {
    const ws = await standIn(t, (_req, res) => {
      res.writeHead(200, { 'content-length': twoMiB.length });
      res.end(twoMiB);
    });
    await expectSourceError(t, source(ws.base).fetch(), /response of 2097152 bytes exceeds the 1048576-byte limit/);
  });
  t.test('chunked, no length', async (t) => {
    const ws = await standIn(t, (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/xml' });
      res.write('<Interfaces>');
      res.end(twoMiB);
    });
    await expectSourceError(t, source(ws.base).fetch(), /response exceeds the 1048576-byte limit/);
  });
});

t.test('connection cut in the middle of the body', async (t) => {
  const ws = await standIn(t, (_req, res) => {
    res.writeHead(200, { 'content-length': 5000 });
    res.write(AZURE_EXAMPLE.slice(0, 100), () => res.socket?.destroy());
  });
  await expectSourceError(t, source(ws.base).fetch(), /(closed before the response was complete|response broke off)/);
});

t.test('the caller can abort; an already-aborted signal never connects', async (t) => {
  const ws = await standIn(t, () => {
    /* never respond */
  });
  const controller = new AbortController();
  const pending = source(ws.base, 60_000).fetch(controller.signal);
  setImmediate(() => controller.abort());
  await expectSourceError(t, pending, /request aborted by the caller/);

  const idle = await standIn(t, (_req, res) => res.end(AZURE_EXAMPLE));
  await expectSourceError(t, source(idle.base).fetch(AbortSignal.abort()), /request aborted by the caller/);
  await source(idle.base).fetch(); // a request that does go out, so one from the aborted call would have arrived first
  t.equal(idle.requests.length, 1, 'the aborted call sent nothing');
});
