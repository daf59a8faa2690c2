// The client side of the daemon socket, for the Node launcher
// (control/plugin/main.ts), `vnetctl status` and `vnetctl debug`: connect fast
// (a dead daemon costs a caller milliseconds), send one request, read one
// answer. A CNI call crosses as INVOKE, the raw call, exactly as the native
// shim sends it; the daemon validates everything.
import net from 'node:net';
import { TryAgainError } from '../../cni/errors.js';
import { FrameReader, Verb, decodeResponse, encodeRequest, frame, type WireRequest, type WireResponse } from './codec.js';

const CLIENT_VERSION = '0.1.0';
/** The shim's ANSWER_TIMEOUT_MS: a call may wait on the node lock and the pool source. */
export const ANSWER_TIMEOUT_MS = 120_000;

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

/**
 * One request, one answer. Rejects with a TryAgainError when the connection
 * breaks or no answer comes in time; `sent` says whether the whole request
 * had left this process by then (if not, the daemon cannot have run it).
 */
export function roundTrip(sock: net.Socket, req: WireRequest, timeoutMs: number): Promise<WireResponse> {
  return new Promise((resolve, reject) => {
    const reader = new FrameReader();
    let sent = false;
    const fail = (err: TryAgainError): void => {
      clearTimeout(timer);
      reject(Object.assign(err, { sent }));
    };
    const timer = setTimeout(() => {
      sock.destroy();
      fail(new TryAgainError(`the node daemon did not answer within ${timeoutMs} ms`));
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
        // the codec throws Error subclasses; wrap anything else so callers always see an Error
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
    sock.once('error', (err) => fail(new TryAgainError(`node daemon connection failed: ${err.message}`, { cause: err })));
    sock.once('close', () => fail(new TryAgainError('the node daemon closed the connection before answering')));
    sock.write(frame(encodeRequest(req)), (err) => {
      if (!err) sent = true;
    });
  });
}

/** The variables of a CNI call: the only environment that crosses the socket. */
export function cniEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (k.startsWith('CNI_') && v !== undefined) out[k] = v;
  return out;
}

export interface RawCall {
  stdin: Uint8Array;
  env: Record<string, string>;
  plugin: 'azure-vnet' | 'azure-vnet-ipam';
}

/** What became of a forwarded call. */
export type InvokeOutcome =
  /** The daemon ran it: print these bytes, exit with this code. */
  | { ran: true; stdout: Buffer; exitCode: number }
  /** The daemon did not run it (not there, refused it, or the request never left): run it here. */
  | { ran: false; refused: boolean; why: string };

/**
 * Forward one CNI call as INVOKE. Rejects (TryAgainError, CNI code 11) only
 * when the daemon may have run the call but its answer was lost: running it
 * again here could race the daemon, so the runtime retries instead (ADD and
 * DEL are idempotent, and a restarted daemon reconciles).
 */
export async function invokeDaemon(socketPath: string, call: RawCall, opts: { connectTimeoutMs?: number; answerTimeoutMs?: number } = {}): Promise<InvokeOutcome> {
  let sock: net.Socket;
  try {
    sock = await connectDaemon(socketPath, opts.connectTimeoutMs);
  } catch (err) {
    return { ran: false, refused: false, why: `daemon socket ${socketPath}: ${(err as Error).message}` };
  }
  try {
    const req: WireRequest = { clientVersion: CLIENT_VERSION, verb: Verb.INVOKE, stdin: call.stdin, env: call.env, plugin: call.plugin };
    let res: WireResponse;
    try {
      res = await roundTrip(sock, req, opts.answerTimeoutMs ?? ANSWER_TIMEOUT_MS);
    } catch (err) {
      if ((err as { sent?: boolean }).sent === false) return { ran: false, refused: false, why: (err as Error).message };
      throw err;
    }
    if (!res.ok) return { ran: false, refused: true, why: `the node daemon refused the call: ${res.error?.message ?? 'no reason given'}` };
    return { ran: true, stdout: Buffer.from(res.stdout), exitCode: res.exitCode };
  } finally {
    sock.destroy();
  }
}
