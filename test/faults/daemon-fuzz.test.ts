// Fuzzing the node daemon's socket: random bytes, random frames, bit-flipped
// and truncated valid requests, oversized length prefixes and hostile JSON,
// each on its own connection to a DaemonServer (in-process, fake agent, socket
// in a temp dir). Invariants: every connection gets a decodable response or is
// closed, within a bound; the server never throws; and afterwards it still
// answers a valid ADD (an INVOKE) with the agent's result.
import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import { connectDaemon, roundTrip } from '../../control/daemon/client.js';
import { decodeResponse, encodeRequest, frame, FrameReader, MAX_FRAME, Verb, type WireRequest, type WireResponse } from '../../control/daemon/codec.js';
import { DaemonServer } from '../../control/daemon/server.js';
import { createLogger } from '../../control/log.js';
import { fakeAgent } from '../unit/cni-fake-agent.js';
import { baseConfig, tempDir } from '../unit/cni-helpers.js';
import { FaultTally } from './helpers/report.js';
import { Rng, scaled, seedFromEnv } from './helpers/scale.js';

const CONNECTIONS = scaled(1_500, 10_000);
const CONN_TIMEOUT_MS = 5_000;
const tally = new FaultTally('daemon-fuzz');

let logDir = '/nonexistent';

function validRequest(verb = Verb.INVOKE, command = 'ADD'): WireRequest {
  return {
    clientVersion: 'fuzz',
    verb,
    stdin: Buffer.from(JSON.stringify(baseConfig(logDir, '1.1.0'))),
    env: { CNI_COMMAND: command, CNI_CONTAINERID: 'c1', CNI_NETNS: '/proc/self/ns/net', CNI_IFNAME: 'eth0', CNI_ARGS: 'K8S_POD_NAME=p' },
    plugin: 'azure-vnet',
  };
}

function hostile(rng: Rng): { name: string; bytes: Buffer } {
  const verb = rng.pick([Verb.INVOKE, Verb.DUMP]);
  const valid = encodeRequest(validRequest(verb, rng.pick(['ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION'])));
  switch (rng.int(10)) {
    case 0:
      return { name: 'random bytes', bytes: rng.bytes(rng.int(200)) };
    case 1:
      return { name: 'frame of random payload', bytes: frame(rng.bytes(rng.int(300))) };
    case 2: {
      const b = Buffer.from(valid);
      for (let i = rng.range(1, 4); i > 0 && b.length; i--) { const at = rng.int(b.length); b[at] = (b[at] ?? 0) ^ (1 << rng.int(8)); }
      return { name: 'bit-flipped request', bytes: frame(b) };
    }
    case 3: {
      const f = frame(valid);
      return { name: 'truncated frame', bytes: f.subarray(0, rng.int(f.length)) };
    }
    case 4: {
      const head = Buffer.alloc(4);
      head.writeUInt32BE(rng.chance(0.5) ? MAX_FRAME + 1 + rng.int(1000) : 0xffffffff);
      return { name: 'oversized length prefix', bytes: Buffer.concat([head, rng.bytes(16)]) };
    }
    case 5: {
      const req = validRequest();
      req.stdin = Buffer.from(rng.pick(['', '{', 'null', '[]', '42', '{"name":5}', '"x"', '{"__proto__":{"name":"x"}}', '{"cniVersion":"1.1.0","name":"azure","type":"azure-vnet","logFile":"relative"}']));
      return { name: 'hostile stdin', bytes: frame(encodeRequest(req)) };
    }
    case 6: {
      const req = validRequest();
      req.env = rng.pick<Record<string, string>>([{}, { CNI_COMMAND: 'ATTACH' }, { CNI_COMMAND: 'ADD', CNI_CONTAINERID: '../x' }, { CNI_COMMAND: 'DEL', CNI_IFNAME: 'a'.repeat(100) }]);
      req.plugin = rng.pick(['azure-vnet', 'azure-vnet-ipam', '', 'evil']);
      return { name: 'hostile env or plugin', bytes: frame(encodeRequest(req)) };
    }
    case 7: {
      const req = validRequest();
      (req as { verb: number }).verb = rng.pick([1, 5, 7, 10, 100, 2 ** 31 - 1]);
      return { name: 'unknown verb', bytes: frame(encodeRequest(req)) };
    }
    case 8:
      return { name: 'several frames, one bad', bytes: Buffer.concat([frame(valid), frame(rng.bytes(20)), frame(valid)]) };
    default:
      return { name: 'empty frame', bytes: frame(Buffer.alloc(0)) };
  }
}

/** Send bytes, half-close, collect until the server closes (bounded). */
function exchange(socketPath: string, bytes: Buffer): Promise<{ closed: boolean; responses: WireResponse[]; undecodable: number }> {
  return new Promise((resolve) => {
    const sock = net.createConnection(socketPath);
    const reader = new FrameReader();
    const responses: WireResponse[] = [];
    let undecodable = 0;
    const timer = setTimeout(() => {
      sock.destroy();
      resolve({ closed: false, responses, undecodable });
    }, CONN_TIMEOUT_MS);
    sock.on('data', (chunk: Buffer) => {
      try {
        for (const f of reader.push(chunk)) responses.push(decodeResponse(f));
      } catch {
        undecodable++;
      }
    });
    sock.on('error', () => {}); // EPIPE/ECONNRESET after the server closed: a close
    sock.on('close', () => {
      clearTimeout(timer);
      resolve({ closed: true, responses, undecodable });
    });
    sock.on('connect', () => sock.end(bytes));
  });
}

t.test('daemon socket fuzzing', async (t) => {
  const seed = seedFromEnv();
  t.comment(`seed ${seed} (replay with VNET_FAULTS_SEED=${seed}), ${CONNECTIONS} connections`);
  const dir = tempDir(t, 'faults-daemon');
  logDir = dir;
  const socketPath = path.join(dir, 'run', 'vnet-cni.sock');
  let agentCalls = 0;
  const server = new DaemonServer({ socketPath, agent: fakeAgent(() => void agentCalls++), logger: createLogger({ name: 'fuzz', level: 'silent' }) });
  await server.listen();
  t.teardown(() => server.close());
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown): void => void uncaught.push(err);
  process.on('uncaughtException', onUncaught);
  t.teardown(() => void process.off('uncaughtException', onUncaught));

  const rng = new Rng(seed);
  const failures: string[] = [];
  for (let i = 0; i < CONNECTIONS; i++) {
    const { name, bytes } = hostile(rng);
    const r = await exchange(socketPath, bytes);
    const malformedReply = r.undecodable > 0 || r.responses.some((x) => !x.ok && (!x.error || !Number.isInteger(x.error.cniCode) || x.error.message === ''));
    const ok = r.closed && !malformedReply;
    const outcome = !ok ? 'HANG OR BAD REPLY' : r.responses.some((x) => !x.ok) ? 'error reply, then closed' : r.responses.length ? 'answered, then closed' : 'closed';
    tally.add('daemon socket', name, outcome);
    if (!ok && failures.length < 10) failures.push(`${name}: closed=${r.closed} undecodable=${r.undecodable} bytes=${bytes.subarray(0, 64).toString('hex')}`);
  }
  t.same(failures, [], `every connection answered or closed within ${CONN_TIMEOUT_MS} ms`);
  t.same(uncaught, [], 'no uncaught exception in the server');

  const sock = await connectDaemon(socketPath, 2_000);
  const res = await roundTrip(sock, validRequest(), 5_000);
  sock.destroy();
  t.equal(res.ok, true, 'a valid ADD is still served afterwards');
  t.equal(res.exitCode, 0, 'and succeeds');
  t.match(JSON.parse(Buffer.from(res.stdout).toString('utf8')), { cniVersion: '1.1.0', ips: [{ address: '10.240.0.5/16' }] }, 'with the agent result');
  t.ok(agentCalls > 0, 'the agent was reached by the valid requests among the fuzz');
  tally.flush({ seed, connections: CONNECTIONS });
});
