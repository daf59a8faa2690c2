// One-shot network client run inside a lab netns by lab/tools/net.ts. Prints
// one JSON line on success; exits 1 with {"error": ...} on failure or timeout.
//   node net-client.js tcp  IP PORT [--source IP] [--timeout MS]
//   node net-client.js udp  IP PORT PAYLOAD [--source IP] [--reply] [--timeout MS]
//   node net-client.js http URL [--source IP] [--timeout MS]
import net from 'node:net';
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

if (mode === 'tcp') {
  const [host, port] = rest;
  const socket = net.connect({ host: host!, port: Number(port), ...(values.source ? { localAddress: values.source } : {}) });
  let data = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (data += chunk));
  socket.on('end', () => finish({ data, local: socket.localAddress, remote: socket.remoteAddress }));
  socket.on('error', (err: NodeJS.ErrnoException) => finish({ error: err.code ?? err.message }, 1));
} else if (mode === 'udp') {
  const [host, port, payload = ''] = rest;
  const socket = dgram.createSocket('udp4');
  socket.on('error', (err: NodeJS.ErrnoException) => finish({ error: err.code ?? err.message }, 1));
  socket.on('message', (msg, rinfo) => finish({ from: rinfo.address, port: rinfo.port, payload: msg.toString('utf8') }));
  socket.bind({ port: 0, ...(values.source ? { address: values.source } : {}) }, () => {
    socket.send(payload, Number(port), host!, (err) => {
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
  finish({ error: 'usage: net-client.js tcp|udp|http ...' }, 2);
}
