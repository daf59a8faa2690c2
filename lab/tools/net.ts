// Helpers tests use to send real packets between lab namespaces. Every helper
// is bounded by a timeout; servers exit with the process that started them.
// `netns` is a netns name (`vl123-vm1`) or a path (`/run/netns/vl123-vm1-pod1`).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { run } from '../../control/exec.js';
import { LabError, LabTimeoutError } from '../errors.js';
import { startChild, stopChild, waitForLine } from '../children.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const tool = (name: string): string => path.join(here, `${name}.js`);

function inNetns(netns: string, argv: string[]): string[] {
  return netns.includes('/') ? ['nsenter', `--net=${netns}`, '--', ...argv] : ['ip', 'netns', 'exec', netns, ...argv];
}

/** A server started inside a netns; stop() is safe to call twice. */
export interface ToolServer {
  readonly pid: number;
  stop(): Promise<void>;
}

async function startServer(netns: string, argv: string[], what: string): Promise<ChildProcess> {
  const child = startChild(inNetns(netns, [process.execPath, ...argv]));
  try {
    await waitForLine(child, /^LISTENING /, 10_000, `${what} in ${netns}`);
  } catch (err) {
    await stopChild(child, 500);
    throw err;
  }
  child.unref();
  return child;
}

/** A whoami server; `clients` lists the source address of every connection it accepted (probes included). */
export interface WhoamiServer extends ToolServer {
  readonly clients: string[];
}

/** Start a TCP whoami server (replies "<client ip> <server ip> <name>" and closes). */
export async function startWhoami(netns: string, port: number, options: { name?: string; bind?: string } = {}): Promise<WhoamiServer> {
  const child = await startServer(netns, [tool('whoami-server'), '--port', String(port), '--name', options.name ?? '-', '--bind', options.bind ?? '0.0.0.0'], 'whoami');
  const clients: string[] = [];
  onLines(child, (line) => {
    if (line.startsWith('CONN ')) clients.push(line.slice(5));
  });
  return { pid: child.pid!, clients, stop: () => stopChild(child, 1000) };
}

function onLines(child: ChildProcess, handle: (line: string) => void): void {
  let buffered = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      handle(buffered.slice(0, newline));
      buffered = buffered.slice(newline + 1);
    }
  });
}

export interface WhoamiAnswer {
  /** the client's address as the server saw it */
  client: string;
  /** the address the server was reached on (after any DNAT) */
  server: string;
  /** the server's --name */
  name: string;
}

interface ClientResult {
  error?: string;
  data?: string;
  from?: string;
  port?: number;
  payload?: string;
  status?: number;
  body?: string;
}

async function client(fromNetns: string, args: string[], timeoutMs: number): Promise<ClientResult> {
  const result = await run(inNetns(fromNetns, [process.execPath, tool('net-client'), ...args, '--timeout', String(timeoutMs)]), { timeoutMs: timeoutMs + 5000 });
  const line = result.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as ClientResult;
  } catch {
    return { error: `net-client: ${(result.stderr || result.stdout).trim().slice(0, 500)}` };
  }
}

/**
 * socat's error line as an errno-like word: "E connect(...): Connection refused" -> ECONNREFUSED.
 * (socat, a small C program, starts in milliseconds; node takes ~100-500 ms on a loaded machine.)
 */
function socatError(stderr: string): string {
  if (/Connection refused/.test(stderr)) return 'ECONNREFUSED';
  if (/timed out|Operation now in progress|inactivity timeout/.test(stderr)) return 'timeout';
  if (/Network is unreachable/.test(stderr)) return 'ENETUNREACH';
  if (/No route to host/.test(stderr)) return 'EHOSTUNREACH';
  if (/Cannot assign requested address/.test(stderr)) return 'EADDRNOTAVAIL';
  return stderr.trim().split('\n').pop()?.replace(/^.* E /, '') || 'no answer';
}

/** Connect from `fromNetns` to ip:port; resolves with what the whoami server answered. Rejects on failure or timeout. */
export async function tcpWhoamiDetail(fromNetns: string, ip: string, port: number, options: { source?: string; timeoutMs?: number } = {}): Promise<WhoamiAnswer> {
  const timeoutMs = options.timeoutMs ?? 3000;
  const seconds = (timeoutMs / 1000).toFixed(3);
  const address = `TCP:${ip}:${port},connect-timeout=${seconds}${options.source ? `,bind=${options.source}` : ''}`;
  const result = await run(inNetns(fromNetns, ['socat', '-T', seconds, '-u', address, 'STDOUT']), { timeoutMs: timeoutMs + 5000 });
  const line = result.stdout.trim();
  if (result.code !== 0 || line === '') {
    const error = result.code === 0 ? 'connection closed without an answer' : socatError(result.stderr);
    const Err = error === 'timeout' ? LabTimeoutError : LabError;
    throw new Err(`tcp ${fromNetns} -> ${ip}:${port}: ${error}`);
  }
  const [clientIp = '', server = '', name = ''] = line.split(' ');
  return { client: clientIp, server, name };
}

/** The client's address as the whoami server at ip:port sees it. */
export async function tcpWhoami(fromNetns: string, ip: string, port: number, options: { source?: string; timeoutMs?: number } = {}): Promise<string> {
  return (await tcpWhoamiDetail(fromNetns, ip, port, options)).client;
}

/** One ping; true if a reply came back within timeoutSec. */
/**
 * Ping from a netns. With no count/timeout given it waits on the condition, not
 * a clock: one probe a second until the first reply, for up to `deadlineSec`
 * (default 10 s), so a loaded machine's slow first reply is not a failure.
 * Pass `timeoutSec`/`count` for an exact probe budget (negative checks, "first
 * try" checks).
 */
export async function ping(
  fromNetns: string,
  ip: string,
  options: { source?: string; timeoutSec?: number; count?: number; deadlineSec?: number } = {},
): Promise<boolean> {
  const exact = options.count !== undefined || options.timeoutSec !== undefined;
  const count = options.count ?? 1;
  const timeoutSec = options.timeoutSec ?? 1;
  const deadline = exact ? timeoutSec * count + 1 : (options.deadlineSec ?? 10);
  const argv = ['ping', '-n', '-q', '-c', String(count), '-W', String(timeoutSec), '-w', String(deadline), ...(options.source ? ['-I', options.source] : []), ip];
  const result = await run(inNetns(fromNetns, argv), { timeoutMs: (deadline + 5) * 1000 });
  return result.code === 0;
}

export interface Datagram {
  from: string;
  port: number;
  payload: string;
}

/** A UDP sink in a netns that records every datagram it receives. */
export interface UdpSink extends ToolServer {
  readonly received: Datagram[];
  /** Resolve with the first datagram (already received or arriving) with this payload; reject after timeoutMs. */
  waitFor(payload: string, timeoutMs?: number): Promise<Datagram>;
}

export async function startUdpSink(netns: string, port: number, options: { echo?: boolean } = {}): Promise<UdpSink> {
  const child = await startServer(netns, [tool('udp-sink'), '--port', String(port), ...(options.echo ? ['--echo'] : [])], 'udp-sink');
  const received: Datagram[] = [];
  const waiters = new Set<() => void>();
  onLines(child, (line) => {
    if (!line.startsWith('{')) return;
    received.push(JSON.parse(line) as Datagram);
    for (const wake of waiters) wake();
  });
  return {
    pid: child.pid!,
    received,
    stop: () => stopChild(child, 1000),
    waitFor(payload: string, timeoutMs = 5000): Promise<Datagram> {
      return new Promise((resolve, reject) => {
        const check = (): boolean => {
          const hit = received.find((d) => d.payload === payload);
          if (!hit) return false;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(hit);
          return true;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new LabTimeoutError(`udp sink in ${netns}:${port}: no datagram '${payload}' within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
  };
}

/**
 * Send one UDP datagram. With awaitReply, resolves with the reply (whose
 * `from` is the source address the reply really carried); otherwise undefined.
 * `source` must be configured in fromNetns (the kernel sends only from local addresses;
 * to spoof, add it as a /32 on eth0 first).
 */
export async function udpSend(
  fromNetns: string,
  ip: string,
  port: number,
  payload: string,
  options: { source?: string; awaitReply?: boolean; timeoutMs?: number } = {},
): Promise<Datagram | undefined> {
  const timeoutMs = options.timeoutMs ?? 3000;
  if (!options.awaitReply) {
    const address = `UDP-SENDTO:${ip}:${port}${options.source ? `,bind=${options.source}` : ''}`;
    const sent = await run(inNetns(fromNetns, ['socat', '-u', 'STDIN', address]), { input: payload, timeoutMs });
    if (sent.code !== 0) throw new LabError(`udp ${fromNetns} -> ${ip}:${port}: ${socatError(sent.stderr)}`);
    return undefined;
  }
  const args = ['udp', ip, String(port), payload, ...(options.source ? ['--source', options.source] : []), '--reply'];
  const result = await client(fromNetns, args, timeoutMs);
  if (result.error !== undefined) {
    const Err = result.error.startsWith('timeout') ? LabTimeoutError : LabError;
    throw new Err(`udp ${fromNetns} -> ${ip}:${port}: ${result.error}`);
  }
  return { from: result.from!, port: result.port!, payload: result.payload! };
}

/** HTTP GET from a netns (optionally from a given local address). Rejects on connection failure or timeout; any HTTP status resolves. */
export async function httpGet(fromNetns: string, url: string, timeoutMs = 3000, options: { source?: string } = {}): Promise<{ status: number; body: string }> {
  const result = await client(fromNetns, ['http', url, ...(options.source ? ['--source', options.source] : [])], timeoutMs);
  if (result.error !== undefined || result.status === undefined) {
    const Err = result.error?.startsWith('timeout') ? LabTimeoutError : LabError;
    throw new Err(`GET ${url} from ${fromNetns}: ${result.error ?? 'no answer'}`);
  }
  return { status: result.status, body: result.body ?? '' };
}

/** A DNS responder (lab/tools/dns.ts) answering every A query with `answer`, over UDP and TCP. */
export async function startDns(netns: string, bind: string, answer: string, port = 53): Promise<ToolServer> {
  const child = await startServer(netns, [tool('dns'), 'serve', '--bind', bind, '--port', String(port), '--answer', answer], 'dns');
  return { pid: child.pid!, stop: () => stopChild(child, 1000) };
}

/** One A query from `fromNetns` to server:port; resolves with the answer's address, rejects on error or timeout. */
export async function dnsQuery(fromNetns: string, server: string, options: { tcp?: boolean; port?: number; name?: string; timeoutMs?: number } = {}): Promise<string> {
  const timeoutMs = options.timeoutMs ?? 10_000; // a verdict, not a speed check: generous under load
  const argv = [process.execPath, tool('dns'), 'query', '--server', server, '--port', String(options.port ?? 53), '--name', options.name ?? 'node-local.test', '--timeout', String(timeoutMs)];
  if (options.tcp) argv.push('--tcp');
  const result = await run(inNetns(fromNetns, argv), { timeoutMs: timeoutMs + 5000 });
  let out: { answer?: string; error?: string };
  try {
    out = JSON.parse(result.stdout.trim().split('\n').pop() ?? '') as typeof out;
  } catch {
    out = { error: (result.stderr || result.stdout).trim().slice(0, 300) || 'no output' };
  }
  if (!out.answer) throw new LabError(`dns ${options.tcp ? 'tcp' : 'udp'} ${fromNetns} -> ${server}: ${out.error ?? 'no answer'}`);
  return out.answer;
}
