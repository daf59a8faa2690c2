// A tiny DNS responder and client for the node-local DNS tests
// (ipsToRouteViaHost): just enough of RFC 1035 for one A question.
//   node dns.js serve --bind 169.254.20.10 [--port 53] --answer 10.9.8.7
//     answers every A query over UDP and TCP with --answer; prints
//     "LISTENING <port>" when both sockets are bound, then one line per query:
//     "QUERY <udp|tcp> <client ip> <name>"; exits when stdin closes.
//   node dns.js query --server IP [--port 53] --name NAME [--tcp] [--timeout MS]
//     prints {"answer":"a.b.c.d"} or {"error":"..."} and exits.
import dgram from 'node:dgram';
import net from 'node:net';
import { parseArgs } from 'node:util';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    bind: { type: 'string', default: '0.0.0.0' },
    port: { type: 'string', default: '53' },
    answer: { type: 'string', default: '10.9.8.7' },
    server: { type: 'string' },
    name: { type: 'string', default: 'node-local.test' },
    tcp: { type: 'boolean', default: false },
    timeout: { type: 'string', default: '3000' },
  },
});
const port = Number(values.port);

function encodeName(name: string): Buffer {
  const parts = name.split('.').filter(Boolean).map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  return Buffer.concat([...parts, Buffer.from([0])]);
}

/** The question's name and where it ends. */
function readQuestion(msg: Buffer): { name: string; end: number } {
  const labels: string[] = [];
  let i = 12;
  while (i < msg.length && msg[i] !== 0) {
    const len = msg[i]!;
    labels.push(msg.subarray(i + 1, i + 1 + len).toString());
    i += 1 + len;
  }
  return { name: labels.join('.'), end: i + 5 }; // zero byte + qtype + qclass
}

function answer(query: Buffer): { reply: Buffer; name: string } {
  const q = readQuestion(query);
  const header = Buffer.alloc(12);
  query.copy(header, 0, 0, 2); // id
  header.writeUInt16BE(0x8180, 2); // response, recursion desired + available
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(1, 6);
  const rr = Buffer.alloc(16);
  rr.writeUInt16BE(0xc00c, 0); // pointer to the question's name
  rr.writeUInt16BE(1, 2); // A
  rr.writeUInt16BE(1, 4); // IN
  rr.writeUInt32BE(30, 6);
  rr.writeUInt16BE(4, 10);
  values.answer.split('.').forEach((b, k) => rr.writeUInt8(Number(b), 12 + k));
  return { reply: Buffer.concat([header, query.subarray(12, q.end), rr]), name: q.name };
}

function serve(): void {
  const udp = dgram.createSocket('udp4');
  udp.on('message', (msg, rinfo) => {
    const { reply, name } = answer(msg);
    process.stdout.write(`QUERY udp ${rinfo.address} ${name}\n`);
    udp.send(reply, rinfo.port, rinfo.address);
  });
  const tcp = net.createServer((sock) => {
    let buf = Buffer.alloc(0);
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
      const { reply, name } = answer(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      process.stdout.write(`QUERY tcp ${sock.remoteAddress ?? '?'} ${name}\n`);
      const len = Buffer.alloc(2);
      len.writeUInt16BE(reply.length);
      sock.end(Buffer.concat([len, reply]));
    });
    sock.on('error', () => {});
  });
  let bound = 0;
  const ready = (): void => {
    if (++bound === 2) process.stdout.write(`LISTENING ${port}\n`);
  };
  const fail = (err: Error): void => {
    process.stderr.write(`dns: ${err.message}\n`);
    process.exit(1);
  };
  udp.on('error', fail);
  tcp.on('error', fail);
  udp.bind(port, values.bind, ready);
  tcp.listen(port, values.bind, ready);
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
  process.on('SIGTERM', () => process.exit(0));
}

function parseAnswer(msg: Buffer): string {
  if (msg.readUInt16BE(6) < 1) throw new Error('no answer record');
  const rdata = msg.subarray(msg.length - 4);
  return [...rdata].join('.');
}

function query(): void {
  const id = Math.floor(Math.random() * 0xffff);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2);
  header.writeUInt16BE(1, 4);
  const q = Buffer.concat([header, encodeName(values.name), Buffer.from([0, 1, 0, 1])]);
  const done = (out: Record<string, string>): void => {
    process.stdout.write(JSON.stringify(out) + '\n');
    process.exit(0);
  };
  setTimeout(() => done({ error: 'timeout' }), Number(values.timeout)).unref();
  if (values.tcp) {
    const sock = net.connect(port, values.server, () => {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(q.length);
      sock.write(Buffer.concat([len, q]));
    });
    let buf = Buffer.alloc(0);
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) done({ answer: parseAnswer(buf.subarray(2, 2 + buf.readUInt16BE(0))) });
    });
    sock.on('error', (err) => done({ error: err.message }));
    return;
  }
  const udp = dgram.createSocket('udp4');
  udp.on('message', (msg) => {
    if (msg.readUInt16BE(0) === id) done({ answer: parseAnswer(msg) });
  });
  udp.on('error', (err) => done({ error: err.message }));
  udp.send(q, port, values.server);
}

if (positionals[0] === 'serve') serve();
else if (positionals[0] === 'query' && values.server) query();
else {
  process.stderr.write('usage: dns.js serve --bind IP [--port 53] [--answer IP] | dns.js query --server IP [--port 53] [--name N] [--tcp]\n');
  process.exit(2);
}
