// The lab's wireserver (168.63.129.16), run by the lab as a child process
// inside the wire netns:
//   node dist/lab/wireserver.js --spec F --admin SOCK --fabric-netns NS --owner-pid PID
//
// - HTTP on 168.63.129.16:80: GET /machine/plugins?comp=nmagent&type=getinterfaceinfov1
//   answers the requesting VM's interfaces (the VM is found by source IP, the
//   primary or any secondary of its NIC), from vnet.json reread on each request.
// - Admin HTTP on a unix socket in the state dir (netns-independent):
//   GET /status, PUT /fault {"mode": ...}, POST /lb/sync.
// - The load balancers' health prober (lb-prober.ts).
// It exits when its stdin closes (the lab's process died) or its owner pid is gone.
import http from 'node:http';
import { existsSync, unlinkSync } from 'node:fs';
import type { Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { SpecFileReader } from './spec-file.js';
import { interfacesXml } from './wire-xml.js';
import { LbProber, PROBE_INTERVAL_MS } from './lb-prober.js';
import { WIRESERVER_IP, vmOwningIp } from './spec.js';
import { pidAlive } from './children.js';
import { parseWireFault, type WireFault } from './wire-fault.js';

const INTERFACES_PATH = '/machine/plugins';

class Wireserver {
  private fault: WireFault = { mode: 'ok' };
  private readonly sockets = new Set<Socket>();
  private readonly server: http.Server;
  private listening = false;
  readonly requests = { total: 0, byVm: {} as Record<string, number>, unknownSource: 0 };

  constructor(
    private readonly spec: SpecFileReader,
    private readonly address: string,
    private readonly port: number,
  ) {
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.keepAliveTimeout = 1000;
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  async setFault(fault: WireFault): Promise<void> {
    this.fault = fault;
    // Connections parked by 'hang' (or kept alive) must not outlive a mode change.
    for (const socket of this.sockets) socket.destroy();
    if (fault.mode === 'down') await this.close();
    else await this.listen();
  }

  getFault(): WireFault {
    return this.fault;
  }

  listen(): Promise<void> {
    if (this.listening) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen(this.port, this.address, () => {
        this.server.off('error', onError);
        this.listening = true;
        resolve();
      });
    });
  }

  close(): Promise<void> {
    if (!this.listening) return Promise.resolve();
    this.listening = false;
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.requests.total += 1;
    const fault = this.fault;
    switch (fault.mode) {
      case 'hang':
        return; // never answer; the socket is destroyed on the next mode change
      case 'slow':
        setTimeout(() => this.answer(req, res), fault.delayMs).unref();
        return;
      case 'garbage':
        res.writeHead(200, { 'Content-Type': 'text/xml; charset=utf-8' });
        res.end('\u0000\u00ff<Interfaces><Interface MacAddress="not a mac" IsPrimary="maybe"><IPSub garbage ]]> &bogus;');
        return;
      case 'huge':
        return streamHuge(res);
      case 'nested':
        res.writeHead(200, { 'Content-Type': 'text/xml; charset=utf-8' });
        res.end(`<Interfaces>${'<Interface>'.repeat(20_000)}${'</Interface>'.repeat(20_000)}</Interfaces>`);
        return;
      case 'entities':
        res.writeHead(200, { 'Content-Type': 'text/xml; charset=utf-8' });
        res.end(BILLION_LAUGHS);
        return;
      case 'wrong':
        res.writeHead(200, { 'Content-Type': 'text/xml; charset=utf-8' });
        res.end(WRONG_NIC_XML);
        return;
      case 'error':
        res.writeHead(fault.status, { 'Content-Type': 'text/plain' });
        res.end(`wireserver fault: HTTP ${fault.status}\n`);
        return;
      default:
        this.answer(req, res);
    }
  }

  private answer(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', `http://${WIRESERVER_IP}`);
    if (req.method !== 'GET' || url.pathname !== INTERFACES_PATH) return text(res, 404, 'not found\n');
    if (url.searchParams.get('comp') !== 'nmagent' || url.searchParams.get('type') !== 'getinterfaceinfov1') {
      return text(res, 400, 'unsupported comp/type\n');
    }
    const source = (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    const spec = this.spec.read();
    const vm = vmOwningIp(spec, source);
    if (vm === undefined) {
      this.requests.unknownSource += 1;
      return text(res, 403, `no VM NIC has the address ${source}\n`);
    }
    this.requests.byVm[vm.name] = (this.requests.byVm[vm.name] ?? 0) + 1;
    let body = interfacesXml(spec.subnet, vm);
    if (this.fault.mode === 'truncated') body = body.slice(0, Math.floor(body.length / 2));
    res.writeHead(200, { 'Content-Type': 'text/xml; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  }
}

/** The classic entity-expansion bomb: 10 levels of 10x, about a billion "lol"s if expanded. */
const BILLION_LAUGHS = [
  '<?xml version="1.0"?>',
  '<!DOCTYPE Interfaces [',
  '  <!ENTITY lol "lol">',
  ...Array.from({ length: 9 }, (_, i) => `  <!ENTITY lol${i + 1} "${`&lol${i === 0 ? '' : i};`.repeat(10)}">`),
  ']>',
  '<Interfaces><Interface MacAddress="&lol9;" IsPrimary="true"/></Interfaces>',
  '',
].join('\n');

/** Well-formed and plausible, but for a NIC (and subnet) no lab VM has. */
const WRONG_NIC_XML = [
  '<Interfaces>',
  '  <Interface MacAddress="0A0B0C0D0E0F" IsPrimary="true">',
  '    <IPSubnet Prefix="192.168.77.0/24">',
  '      <IPAddress Address="192.168.77.4" IsPrimary="true"/>',
  '      <IPAddress Address="192.168.77.5" IsPrimary="false"/>',
  '    </IPSubnet>',
  '  </Interface>',
  '</Interfaces>',
  '',
].join('\n');

/** 4 MiB of plausible XML in 64 KiB chunks, stopping early if the client hangs up. */
function streamHuge(res: http.ServerResponse): void {
  res.writeHead(200, { 'Content-Type': 'text/xml; charset=utf-8' });
  const chunk = `<!-- ${'x'.repeat(64 * 1024 - 10)} -->`;
  let left = 64;
  const pump = (): void => {
    while (left > 0 && !res.destroyed) {
      left -= 1;
      if (!res.write(chunk)) return void res.once('drain', pump);
    }
    if (!res.destroyed) res.end('<Interfaces/>');
  };
  res.write('<Interfaces>');
  pump();
}

function text(res: http.ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain' });
  res.end(body);
}

function readBody(req: http.IncomingMessage, limit = 64 * 1024): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
      if (body.length > limit) reject(new Error('request body too large'));
    });
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

function adminServer(wire: Wireserver, prober: LbProber): http.Server {
  const status = (): object => ({ fault: wire.getFault(), requests: wire.requests, lb: prober.status(), lbCycles: prober.cycles, lbError: prober.lastApplyError ?? null });
  return http.createServer((req, res) => {
    const reply = (code: number, body: unknown): void => {
      res.writeHead(code, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const route = `${req.method} ${req.url}`;
    (async () => {
      if (route === 'GET /status') return reply(200, status());
      if (route === 'PUT /fault') {
        await wire.setFault(parseWireFault(JSON.parse(await readBody(req))));
        return reply(200, status());
      }
      if (route === 'POST /lb/sync') {
        // Two rounds: the first may only count a failure (down needs two in a row).
        await prober.cycle();
        await prober.cycle();
        return reply(200, status());
      }
      return reply(404, { error: `no route ${route}` });
    })().catch((err: unknown) => reply(400, { error: err instanceof Error ? err.message : String(err) }));
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      spec: { type: 'string' },
      admin: { type: 'string' },
      'fabric-netns': { type: 'string' },
      'owner-pid': { type: 'string' },
      address: { type: 'string', default: WIRESERVER_IP },
      port: { type: 'string', default: '80' },
    },
  });
  if (!values.spec || !values.admin || !values['fabric-netns'] || !values['owner-pid']) {
    throw new Error('usage: wireserver.js --spec FILE --admin SOCKET --fabric-netns NAME --owner-pid PID');
  }
  const ownerPid = Number(values['owner-pid']);
  const spec = new SpecFileReader(values.spec);
  const wire = new Wireserver(spec, values.address, Number(values.port));
  const prober = new LbProber(() => spec.read(), values['fabric-netns']);
  await wire.listen();

  const adminPath = values.admin;
  if (existsSync(adminPath)) unlinkSync(adminPath);
  const admin = adminServer(wire, prober);
  await new Promise<void>((resolve) => admin.listen(adminPath, resolve));

  const probeTimer = setInterval(() => void prober.cycle(), PROBE_INTERVAL_MS);
  const shutdown = (why: string): void => {
    clearInterval(probeTimer);
    process.stderr.write(`wireserver: exiting (${why})\n`);
    try {
      unlinkSync(adminPath);
    } catch {
      // already gone with the state dir
    }
    process.exit(0);
  };
  // The lab's process holds our stdin open; EOF means it died (even by kill -9).
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume();
  setInterval(() => {
    if (!pidAlive(ownerPid)) shutdown(`owner ${ownerPid} is gone`);
  }, 1000).unref();
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.stdout.write(`READY ${values.address}:${values.port} admin=${adminPath}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`wireserver: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
