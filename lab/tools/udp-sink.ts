// UDP sink: prints one JSON line per datagram received,
//   {"from":"<src ip>","port":<src port>,"payload":"<text>"}
// and, with --echo, sends the payload back to the sender (so the sender can
// see which source address the reply carries).
//   node udp-sink.js --port 9000 [--echo]
// Prints "LISTENING <port>" when ready; exits when stdin closes.
import dgram from 'node:dgram';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string' }, echo: { type: 'boolean', default: false } } });
const port = Number(values.port);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  process.stderr.write('usage: udp-sink.js --port N [--echo]\n');
  process.exit(2);
}
const socket = dgram.createSocket('udp4');
socket.on('message', (msg, rinfo) => {
  process.stdout.write(JSON.stringify({ from: rinfo.address, port: rinfo.port, payload: msg.toString('utf8') }) + '\n');
  if (values.echo) socket.send(msg, rinfo.port, rinfo.address);
});
socket.on('error', (err) => {
  process.stderr.write(`udp-sink: ${err.message}\n`);
  process.exit(1);
});
socket.bind(port, '0.0.0.0', () => process.stdout.write(`LISTENING ${port}\n`));
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
