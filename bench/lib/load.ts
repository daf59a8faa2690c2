// The load generators, each run inside a namespace: iperf3 for throughput and
// bench/tools/tcp-rr.c (compiled here with clang) for round trips and
// connection rates. Every client is bounded by a count and a timeout.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { run, runOk } from '../../control/exec.js';
import { nsArgv } from '../../lab/lab.js';
import { startChild, stopChild, waitForLine } from '../../lab/children.js';
import { busySeconds, sampleCpu } from './cpu.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** Repository root (this module runs from dist/bench/lib). */
export const REPO = path.resolve(here, '..', '..', '..');

/** A place in the lab traffic starts from or goes to: a netns (name or path) and an IP in it. */
export interface Endpoint {
  netns: string;
  ip: string;
}

export interface Throughput {
  gbps: number;
  /** machine-wide busy CPU milliseconds per Gbit moved */
  cpuMsPerGbit: number;
}

export interface RoundTrips {
  n: number;
  p50: number;
  p99: number;
  mean: number;
}

export interface ConnRate {
  ok: number;
  failed: number;
  seconds: number;
  cps: number;
}

export class LoadTools {
  private constructor(
    private readonly dir: string,
    readonly tcpRr: string,
  ) {}

  /** Compile tcp-rr into a private temp dir; close() removes it. */
  static async build(): Promise<LoadTools> {
    const dir = mkdtempSync(path.join(os.tmpdir(), `vnet-bench-${process.pid}-`));
    const bin = path.join(dir, 'tcp-rr');
    await runOk(['clang', '-O2', '-Wall', '-o', bin, path.join(REPO, 'bench', 'tools', 'tcp-rr.c')], { timeoutMs: 60_000 });
    return new LoadTools(dir, bin);
  }

  close(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** iperf3 TCP from `client` to `server` for `seconds`. */
  async iperf(client: Endpoint, server: Endpoint, port: number, seconds: number): Promise<Throughput> {
    const srv = startChild(nsArgv(server.netns, ['iperf3', '-s', '-1', '-p', String(port), '--forceflush']));
    try {
      await waitForLine(srv, /Server listening/, 10_000, `iperf3 server in ${server.netns}`);
      const before = sampleCpu();
      const res = await run(nsArgv(client.netns, ['iperf3', '-c', server.ip, '-p', String(port), '-t', String(seconds), '-J']), { timeoutMs: (seconds + 30) * 1000 });
      const after = sampleCpu();
      const json = JSON.parse(res.stdout || '{}') as { error?: string; end?: { sum_received?: { bits_per_second: number; seconds: number } } };
      const sum = json.end?.sum_received;
      if (res.code !== 0 || !sum) throw new Error(`iperf3 ${client.ip} -> ${server.ip}: ${json.error ?? res.stderr.trim()}`);
      const gbps = sum.bits_per_second / 1e9;
      const gbit = gbps * sum.seconds;
      return { gbps, cpuMsPerGbit: (busySeconds(before, after) * 1000) / gbit };
    } finally {
      await stopChild(srv, 500);
    }
  }

  /** Start a tcp-rr server ('echo' for RR, 'once' for CRR) in a netns. */
  async server(at: Endpoint, mode: 'echo' | 'once', port: number): Promise<ChildProcess> {
    const child = startChild(nsArgv(at.netns, [this.tcpRr, mode, String(port)]));
    try {
      await waitForLine(child, /^LISTENING /, 10_000, `tcp-rr ${mode} in ${at.netns}`);
    } catch (err) {
      await stopChild(child, 500);
      throw err;
    }
    return child;
  }

  /** `count` 1-byte round trips on one connection (at most `maxSeconds`). */
  async roundTrips(client: Endpoint, server: Endpoint, port: number, count: number, maxSeconds: number): Promise<RoundTrips> {
    const srv = await this.server(server, 'echo', port);
    try {
      const out = await runOk(nsArgv(client.netns, [this.tcpRr, 'rr', server.ip, String(port), String(count), String(maxSeconds)]), { timeoutMs: (maxSeconds + 20) * 1000 });
      return JSON.parse(out) as RoundTrips;
    } finally {
      await stopChild(srv, 500);
    }
  }

  /** Connect/request/response/close loops, one client per port in parallel, summed. */
  async connRate(client: Endpoint, server: Endpoint, ports: number[], perClient: number, maxSeconds: number): Promise<ConnRate> {
    const servers: ChildProcess[] = [];
    try {
      for (const port of ports) servers.push(await this.server(server, 'once', port));
      const results = await Promise.all(
        ports.map(async (port) => {
          const out = await runOk(nsArgv(client.netns, [this.tcpRr, 'crr', server.ip, String(port), String(perClient), String(maxSeconds)]), { timeoutMs: (maxSeconds + 30) * 1000 });
          return JSON.parse(out) as ConnRate;
        }),
      );
      const ok = results.reduce((a, r) => a + r.ok, 0);
      const failed = results.reduce((a, r) => a + r.failed, 0);
      const seconds = Math.max(...results.map((r) => r.seconds));
      return { ok, failed, seconds, cps: ok / seconds };
    } finally {
      for (const s of servers) await stopChild(s, 500);
    }
  }
}
