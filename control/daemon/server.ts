// The node daemon's socket server: decodes protobuf requests, runs each
// forwarded CNI call (INVOKE) through the CNI front end on the node's one
// Agent, encodes the answer. Nothing the client parsed is trusted: INVOKE
// carries the raw call and invoke.ts validates it as a standalone plugin
// would. DUMP (not a CNI call) answers the state for `vnetctl debug`. A request
// that is not valid protobuf gets an error frame and its connection is closed;
// the daemon itself never goes down for a bad client.
import net from 'node:net';
import { chmod, mkdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { AgentApi } from '../../cni/types.js';
import { asVnetError, CniCode, DecodeError } from '../../cni/errors.js';
import { FrameReader, Verb, decodeRequest, encodeResponse, frame, type WireRequest, type WireResponse } from './codec.js';
import { CallLoggers, invoke } from './invoke.js';
import { spawnTally, type SpawnTally } from '../exec.js';
import { IdleTrimmer } from './idle-trim.js';

export interface DaemonServerOptions {
  socketPath: string;
  agent: AgentApi & { dump?(): Promise<unknown> };
  logger: Logger;
  /** Called after each request, for metrics. */
  onRequest?: (verb: string, ok: boolean, seconds: number, code?: number) => void;
}

/** Metrics and logs name an INVOKE by its CNI command (ADD, IPAM_ADD, ...). */
function invokeVerbName(req: WireRequest): string {
  const command = req.env?.CNI_COMMAND ?? '';
  if (!['ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION'].includes(command)) return 'INVOKE';
  return req.plugin === 'azure-vnet-ipam' && (command === 'ADD' || command === 'DEL') ? `IPAM_${command}` : command;
}

/** The CNI code in a failed INVOKE's error document, for metrics. */
function invokeErrorCode(stdout: Uint8Array): number | undefined {
  try {
    const doc = JSON.parse(Buffer.from(stdout).toString('utf8')) as { code?: unknown };
    return typeof doc.code === 'number' ? doc.code : undefined;
  } catch {
    return undefined;
  }
}

function failure(error: WireResponse['error']): WireResponse {
  return { ok: false, resultJson: '', error, stdout: Buffer.alloc(0), exitCode: 0 };
}

export class DaemonServer {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  /** Per-call loggers for INVOKE (the conflist's logFile), opened once per file. */
  private readonly callLoggers = new CallLoggers();
  private readonly idleTrim = new IdleTrimmer();

  constructor(private readonly opts: DaemonServerOptions) {}

  async listen(): Promise<void> {
    const { socketPath } = this.opts;
    await mkdir(path.dirname(socketPath), { recursive: true, mode: 0o700 });
    await unlink(socketPath).catch(() => {});
    const server = net.createServer((sock) => this.serve(sock));
    const oldMask = process.umask(0o177); // the socket is born 0600: root only
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(socketPath, () => resolve());
      });
    } finally {
      process.umask(oldMask);
    }
    await chmod(socketPath, 0o600);
    this.server = server;
  }

  private serve(sock: net.Socket): void {
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => {});
    const reader = new FrameReader();
    sock.on('data', (chunk: Buffer) => {
      let frames: Buffer[];
      try {
        frames = reader.push(chunk);
      } catch (err) {
        this.reject(sock, err);
        return;
      }
      for (const f of frames) void this.handle(sock, f);
    });
  }

  private reject(sock: net.Socket, err: unknown): void {
    const res = failure({ cniCode: CniCode.DecodeFailure, code: 'EDECODE', message: (err as Error).message, details: '' });
    sock.end(frame(encodeResponse(res)));
  }

  private async handle(sock: net.Socket, payload: Buffer): Promise<void> {
    let req: WireRequest;
    try {
      req = decodeRequest(payload);
    } catch (err) {
      this.opts.logger.warn({ err }, 'undecodable request');
      this.reject(sock, new Error(`request is not a valid vnetcni.v1.Request: ${(err as Error).message}`));
      return;
    }
    this.idleTrim.begin();
    try {
      await this.answer(sock, req);
    } finally {
      this.idleTrim.end();
    }
  }

  private async answer(sock: net.Socket, req: WireRequest): Promise<void> {
    const started = process.hrtime.bigint();
    const verbName = req.verb === Verb.INVOKE ? invokeVerbName(req) : Verb[req.verb] ?? String(req.verb);
    let res: WireResponse;
    const spawns: SpawnTally = {};
    try {
      res = await spawnTally.run(spawns, () => this.respond(req));
    } catch (err) {
      const e = asVnetError(err);
      res = failure({ cniCode: e.cniCode, code: e.code, message: e.message, details: e.details ?? '' });
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const cniCode = res.error?.cniCode ?? (res.exitCode ? invokeErrorCode(res.stdout) : undefined);
    this.opts.onRequest?.(verbName, res.ok && !res.exitCode, seconds, cniCode);
    // Which client forwarded it: the native shim (client_version "...-shim") or the Node launcher.
    const via = req.verb === Verb.INVOKE ? (req.clientVersion.endsWith('-shim') ? 'shim' : 'node') : undefined;
    const containerId = req.env.CNI_CONTAINERID || undefined;
    // spawns: the programs this request ran (ip, iptables, ebtables...) and the ms spent waiting for them.
    const spawned = Object.fromEntries(Object.entries(spawns).map(([k, v]) => [k, { n: v.n, ms: Math.round(v.ms) }]));
    // Time inside the daemon per verb: compare with the client's wall time to see transport and start-up costs.
    this.opts.logger.info({ verb: verbName, via, containerId, ok: res.ok, exitCode: res.exitCode, ms: Math.round(seconds * 1e4) / 10, spawns: spawned }, 'request served');
    if (!sock.destroyed) sock.write(frame(encodeResponse(res)));
  }

  private async respond(req: WireRequest): Promise<WireResponse> {
    switch (req.verb) {
      case Verb.INVOKE: {
        // The whole CNI call, run by the plugin's own code; its outcome (even a CNI error) is ok=true.
        const out = await invoke(this.opts.agent, this.callLoggers, req);
        return { ok: true, resultJson: '', stdout: out.stdout, exitCode: out.exitCode };
      }
      case Verb.DUMP: {
        const state = this.opts.agent.dump ? await this.opts.agent.dump() : {};
        return { ok: true, resultJson: JSON.stringify(state), stdout: Buffer.alloc(0), exitCode: 0 };
      }
      default:
        // Verbs 1-7 were the per-verb requests, removed: an older client then runs its call standalone.
        throw new DecodeError(`unknown verb ${String(req.verb)}: this daemon serves INVOKE (a CNI call) and DUMP`);
    }
  }

  async close(): Promise<void> {
    this.idleTrim.stop();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    await unlink(this.opts.socketPath).catch(() => {});
    this.callLoggers.closeAll();
  }
}
