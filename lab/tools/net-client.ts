// One-shot network client run inside a lab netns by lab/tools/net.ts (the
// cases socat cannot report: a UDP reply's source address, HTTP status). Prints
// one JSON line on success; exits 1 with {"error": ...} on failure or timeout.
//   node net-client.js udp  IP PORT PAYLOAD [--source IP] [--reply] [--timeout MS]
//   node net-client.js http URL [--source IP] [--timeout MS]
import dgram from 'node:dgram';
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { source: { type: 'string' }, timeout: { type: 'string', default: '3000' }, reply: { type: 'boolean', default: false } },
});
const timeoutMs = Number(values.timeout);
const [mode, ...rest] = positionals;

function finish(result: unknown, code = 0): never {
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(code);
}
setTimeout(() => finish({ error: `timeout after ${timeoutMs} ms` }, 1), timeoutMs).unref();

if (mode === 'udp') {
  const [host, port, payload = ''] = rest;
  const socket = dgram.createSocket('udp4');
  socket.on('error', (err: NodeJS.ErrnoException) => finish({ error: err.code ?? err.message }, 1));
  socket.on('message', (msg, rinfo) => finish({ from: rinfo.address, port: rinfo.port, payload: msg.toString('utf8') }));
  socket.bind({ port: 0, ...(values.source ? { address: values.source } : {}) }, () => {
    socket.send(payload, Number(port), host, (err) => {
      if (err) finish({ error: (err as NodeJS.ErrnoException).code ?? err.message }, 1);
      if (!values.reply) finish({ sent: payload.length });
    });
  });
} else if (mode === 'http') {
  const [url] = rest;
  const req = http.get(url!, { timeout: timeoutMs, agent: false, ...(values.source ? { localAddress: values.source } : {}) }, (res) => {
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => (body += chunk));
    res.on('end', () => finish({ status: res.statusCode, body }));
  });
  req.on('error', (err: NodeJS.ErrnoException) => finish({ error: err.code ?? err.message }, 1));
} else {
  finish({ error: 'usage: net-client.js udp|http ...' }, 2);
}
