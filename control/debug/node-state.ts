// The control plane's view for `vnetctl debug`: the daemon's DUMP when a
// daemon answers on its socket (what it holds in memory is what it acts on),
// else the state file read directly, without the node lock.
import { existsSync } from 'node:fs';
import { connectDaemon, roundTrip } from '../daemon/client.js';
import { Verb, type WireRequest } from '../daemon/codec.js';
import { NodeStore, type NodeState } from '../store/node-store.js';
import { VnetError } from '../errors.js';

export interface StateSnapshot {
  state: NodeState;
  /** where it came from, shown in every view's header */
  source: { kind: 'daemon'; socket: string } | { kind: 'state-file'; file: string; daemonError?: string };
}

const DUMP_TIMEOUT_MS = 10_000;

export async function dumpFromDaemon(socket: string): Promise<NodeState> {
  const sock = await connectDaemon(socket, 1000);
  try {
    const req: WireRequest = { clientVersion: 'vnetctl-debug', verb: Verb.DUMP, stdin: Buffer.alloc(0), env: {}, plugin: '' };
    const res = await roundTrip(sock, req, DUMP_TIMEOUT_MS);
    if (!res.ok) throw new VnetError(`daemon DUMP failed: ${res.error?.message ?? 'no error given'}`);
    return JSON.parse(res.resultJson) as NodeState;
  } finally {
    sock.destroy();
  }
}

/** The daemon's DUMP if `socket` exists and answers, else the state file under stateDir. */
export async function loadState(opts: { socket: string; stateDir: string }): Promise<StateSnapshot> {
  let daemonError: string | undefined;
  if (existsSync(opts.socket)) {
    try {
      return { state: await dumpFromDaemon(opts.socket), source: { kind: 'daemon', socket: opts.socket } };
    } catch (err) {
      daemonError = (err as Error).message;
    }
  }
  const store = new NodeStore(opts.stateDir);
  const state = await store.peek();
  return { state, source: { kind: 'state-file', file: store.file, ...(daemonError ? { daemonError } : {}) } };
}
