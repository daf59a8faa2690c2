// A tiny TCP/UDP peer for the real-traffic tests, run inside a netns with
// `ip netns exec NS node echo.js ...`:
//   server tcp|udp PORT [ADDR]   prints "ready", answers every client with "<its address>:<its port>"
//   client tcp|udp HOST PORT     prints the answer (exit 0) or exits 1 after 3 s
import net from 'node:net';
import dgram from 'node:dgram';

const [role, proto, a, b] = process.argv.slice(2);

if (role === 'server' && proto === 'tcp') {
  const server = net.createServer((sock) => {
    sock.end(`${sock.remoteAddress}:${sock.remotePort}\n`);
    sock.on('error', () => {});
  });
  server.listen(Number(a), '0.0.0.0', () => console.log('ready'));
} else if (role === 'server' && proto === 'udp') {
  const sock = dgram.createSocket('udp4');
  sock.on('message', (_msg, rinfo) => sock.send(`${rinfo.address}:${rinfo.port}\n`, rinfo.port, rinfo.address));
  // Bind the address clients use: an unbound UDP reply would leave from
  // whatever source the route picks, as no real server does.
  sock.bind(Number(a), b ?? '0.0.0.0', () => console.log('ready'));
} else if (role === 'client') {
  const timer = setTimeout(() => {
    console.error('timeout');
    process.exit(1);
  }, 3000);
  const done = (text: string): void => {
    clearTimeout(timer);
    process.stdout.write(text);
    process.exit(0);
  };
  if (proto === 'tcp') {
    let got = '';
    const sock = net.connect(Number(b), a);
    sock.on('data', (d) => (got += d.toString()));
    sock.on('end', () => done(got));
    sock.on('error', (e) => {
      console.error(e.message);
      process.exit(1);
    });
  } else {
    const sock = dgram.createSocket('udp4');
    sock.on('message', (m) => done(m.toString()));
    sock.send('hi', Number(b), a);
  }
} else {
  console.error('usage: echo.js server tcp|udp PORT | client tcp|udp HOST PORT');
  process.exit(2);
}
