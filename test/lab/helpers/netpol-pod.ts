// The netpol conformance test's pod program, run inside a pod netns (nsenter):
//   serve NAME tcp:80,tcp:81,udp:80,udp:81   every socket answers NAME ("x/a"): TCP
//                                            writes it and closes, UDP echoes it back;
//                                            prints "LISTENING" once all are bound.
//                                            Then each stdin line {"id":N,...ProbeRequest}
//                                            is probed from this pod, answered by a line
//                                            "RESULT N {key: {name, ms}}": the pod's
//                                            prober for every step, without a process each.
//   probe < {"probes":[Probe...],"allowMs":N,"denyMs":N}
//                                            runs every probe at once; prints one JSON
//                                            line {key: {name, ms}} (name absent = no answer).
// A probe expected to connect retries until it does, for up to allowMs (so load only
// delays a pass). A probe expected to be blocked gets denyMs, a generous window, and
// keeps trying through it (TCP: the kernel's SYN retries; UDP: a datagram every 500 ms),
// so "blocked" never rests on one short timeout. One process per source pod: the
// probes are sockets, not processes.
import net from 'node:net';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

export interface Probe {
  key: string;
  ip: string;
  port: number;
  proto: 'TCP' | 'UDP';
  /** What the expected table says: only picks the window (allowMs or denyMs). */
  expect: boolean;
}
export interface ProbeRequest {
  probes: Probe[];
  allowMs: number;
  denyMs: number;
}
export type ProbeResults = Record<string, { name?: string; ms: number }>;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function serve(name: string, spec: string): void {
  const socks = spec.split(',').map((s) => {
    const [proto, port] = s.split(':') as [string, string];
    return { proto, port: Number(port) };
  });
  let pending = socks.length;
  const bound = (): void => {
    if (--pending === 0) console.log('LISTENING');
  };
  for (const { proto, port } of socks) {
    if (proto === 'tcp') {
      const srv = net.createServer((c) => {
        c.on('error', () => {});
        c.end(`${name}\n`);
      });
      srv.listen(port, '0.0.0.0', bound);
    } else {
      const s = dgram.createSocket('udp4');
      s.on('message', (_msg, rinfo) => s.send(name, rinfo.port, rinfo.address));
      s.bind(port, '0.0.0.0', bound);
    }
  }
  createInterface({ input: process.stdin }).on('line', (line) => {
    const req = JSON.parse(line) as ProbeRequest & { id: number };
    void probeAll(req).then((out) => console.log(`RESULT ${req.id} ${JSON.stringify(out)}`));
  });
}

/** One TCP connection: the server's name, or undefined (refused, reset, timed out). */
function tcpOnce(ip: string, port: number, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    let data = '';
    const c = net.connect({ host: ip, port });
    const timer = setTimeout(() => {
      c.destroy();
      resolve(undefined);
    }, timeoutMs);
    c.on('data', (d: Buffer) => (data += d.toString('utf8')));
    c.on('end', () => {
      clearTimeout(timer);
      c.destroy();
      resolve(data.trim() || undefined);
    });
    c.on('error', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
  });
}

/** A datagram every 500 ms from one socket until a reply or the deadline. */
function udpUntil(ip: string, port: number, deadline: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    let done = false;
    const finish = (v: string | undefined): void => {
      if (done) return;
      done = true;
      clearInterval(iv);
      clearTimeout(timer);
      s.close();
      resolve(v);
    };
    const send = (): void => s.send('probe', port, ip, () => {});
    s.on('message', (msg) => finish(msg.toString('utf8')));
    s.on('error', () => {});
    const iv = setInterval(send, 500);
    const timer = setTimeout(() => finish(undefined), Math.max(0, deadline - Date.now()));
    send();
  });
}

async function probeOne(p: Probe, req: ProbeRequest): Promise<{ name?: string; ms: number }> {
  const start = Date.now();
  const deadline = start + (p.expect ? req.allowMs : req.denyMs);
  let name: string | undefined;
  if (p.proto === 'UDP') {
    name = await udpUntil(p.ip, p.port, deadline);
  } else {
    while (name === undefined && Date.now() < deadline) {
      name = await tcpOnce(p.ip, p.port, Math.min(3000, Math.max(1, deadline - Date.now())));
      if (name === undefined && Date.now() < deadline) await sleep(200);
    }
  }
  return name === undefined ? { ms: Date.now() - start } : { name, ms: Date.now() - start };
}

async function probeAll(req: ProbeRequest): Promise<ProbeResults> {
  const out: ProbeResults = {};
  await Promise.all(req.probes.map(async (p) => (out[p.key] = await probeOne(p, req))));
  return out;
}

async function probe(): Promise<void> {
  console.log(JSON.stringify(await probeAll(JSON.parse(readFileSync(0, 'utf8')) as ProbeRequest)));
}

const [cmd, ...args] = process.argv.slice(2);
if (cmd === 'serve') serve(args[0]!, args[1]!);
else if (cmd === 'probe') await probe();
else {
  console.error('usage: netpol-pod.js serve NAME tcp:80,udp:80 | probe < request.json');
  process.exit(2);
}
