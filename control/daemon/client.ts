// The CNI binary's side of the daemon socket: an AgentApi that forwards each
// verb as one protobuf request. Connecting fails fast so a dead daemon costs
// the plugin milliseconds before it falls back to standalone mode.
import net from 'node:net';
import type { AgentApi, Attachment, CniCall, CniResult, NetConf } from '../types.js';
import { VnetError, TryAgainError } from '../errors.js';
import { FrameReader, Verb, frame, type WireRequest, type WireResponse } from './codec-types.js';
import { decodeResponseLite as decodeResponse, encodeRequestLite as encodeRequest } from './wire-lite.js';

const CLIENT_VERSION = '0.1.0';

/** A VnetError rebuilt from the daemon's answer, keeping the daemon's CNI code. */
export class RemoteError extends VnetError {
  override readonly code: string;
  override readonly cniCode: number;
  constructor(e: { cniCode: number; code: string; message: string; details: string }) {
    super(e.message, e.details ? { details: e.details } : undefined);
    this.code = e.code;
    this.cniCode = e.cniCode;
  }
}

export function connectDaemon(socketPath: string, timeoutMs = 250): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`connect ${socketPath}: timed out`));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      resolve(sock);
    });
    sock.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

export function roundTrip(sock: net.Socket, req: WireRequest, timeoutMs: number): Promise<WireResponse> {
  return new Promise((resolve, reject) => {
    const reader = new FrameReader();
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new TryAgainError(`the node daemon did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on('data', (chunk: Buffer) => {
      try {
        const frames = reader.push(chunk);
        if (frames.length) {
          clearTimeout(timer);
          resolve(decodeResponse(frames[0]!));
        }
      } catch (err) {
        clearTimeout(timer);
        reject(err);
      }
    });
    sock.once('error', (err) => {
      clearTimeout(timer);
      reject(new TryAgainError(`node daemon connection failed: ${err.message}`, { cause: err }));
    });
    sock.once('close', () => {
      clearTimeout(timer);
      reject(new TryAgainError('the node daemon closed the connection before answering'));
    });
    sock.write(frame(encodeRequest(req)));
  });
}

export class RemoteAgent implements AgentApi {
  constructor(
    private readonly sock: net.Socket,
    private readonly timeoutMs = 120_000,
  ) {}

  private async call(verb: Verb, config: NetConf, call?: CniCall, valid?: Attachment[]): Promise<string> {
    const req: WireRequest = {
      clientVersion: CLIENT_VERSION, verb,
      containerId: call?.containerId ?? '', netns: call?.netns ?? '', ifName: call?.ifName ?? '', args: call?.args ?? {},
      configJson: JSON.stringify(config),
      prevResultJson: call?.prevResult ? JSON.stringify(call.prevResult) : '',
      validAttachments: valid ?? [],
    };
    const res = await roundTrip(this.sock, req, this.timeoutMs);
    if (!res.ok) throw new RemoteError(res.error ?? { cniCode: 999, code: 'EREMOTE', message: 'the daemon failed without an error', details: '' });
    return res.resultJson;
  }

  async add(call: CniCall): Promise<CniResult> {
    return JSON.parse(await this.call(Verb.ADD, call.config, call)) as CniResult;
  }
  async del(call: CniCall): Promise<void> {
    await this.call(Verb.DEL, call.config, call);
  }
  async check(call: CniCall): Promise<void> {
    await this.call(Verb.CHECK, call.config, call);
  }
  async gc(config: NetConf, valid: Attachment[]): Promise<void> {
    await this.call(Verb.GC, config, undefined, valid);
  }
  async status(config: NetConf): Promise<void> {
    await this.call(Verb.STATUS, config);
  }
  async ipamAdd(call: CniCall): Promise<CniResult> {
    return JSON.parse(await this.call(Verb.IPAM_ADD, call.config, call)) as CniResult;
  }
  async ipamDel(call: CniCall): Promise<void> {
    await this.call(Verb.IPAM_DEL, call.config, call);
  }
  async close(): Promise<void> {
    this.sock.end();
  }
}
