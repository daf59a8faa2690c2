// TCP "whoami": answers each connection with one line
//   <client ip> <server ip> <name>
// (the client's address as this side sees it, the local address it was
// reached on) and closes. Run inside a lab netns by lab/tools/net.ts:
//   node whoami-server.js --port 8080 [--bind 0.0.0.0] [--name pod1]
// Prints "LISTENING <port>" when ready and "CONN <client ip>" per connection;
// exits when stdin closes.
import net from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string' }, bind: { type: 'string', default: '0.0.0.0' }, name: { type: 'string', default: '-' } } });
const port = Number(values.port);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  process.stderr.write('usage: whoami-server.js --port N [--bind IP] [--name NAME]\n');
  process.exit(2);
}
const server = net.createServer((socket) => {
  const strip = (ip: string | undefined): string => (ip ?? '?').replace(/^::ffff:/, '');
  socket.on('error', () => {});
  process.stdout.write(`CONN ${strip(socket.remoteAddress)}\n`);
  socket.end(`${strip(socket.remoteAddress)} ${strip(socket.localAddress)} ${values.name}\n`);
});
server.listen(port, values.bind, () => process.stdout.write(`LISTENING ${port}\n`));
server.on('error', (err) => {
  process.stderr.write(`whoami-server: ${err.message}\n`);
  process.exit(1);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
