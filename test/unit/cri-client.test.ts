// The lab's CRI v1 client (lab/cri.ts) against an in-process gRPC server on a
// unix socket playing containerd's side: method paths, length-prefixed
// protobuf frames both ways, and gRPC status errors (in trailers, and
// trailers-only answers) surfaced as CriError.
import t from 'tap';
import http2 from 'node:http2';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CriClient, CriError, criType } from '../../lab/cri.js';

function frame(typeName: string, obj: Record<string, unknown>): Buffer {
  const type = criType(typeName);
  const body = Buffer.from(type.encode(type.fromObject(obj)).finish());
  const out = Buffer.alloc(5 + body.length);
  out.writeUInt32BE(body.length, 1);
  body.copy(out, 5);
  return out;
}

function unframe(typeName: string, data: Buffer): Record<string, unknown> {
  const type = criType(typeName);
  return type.toObject(type.decode(data.subarray(5, 5 + data.readUInt32BE(1))), { enums: String, defaults: true });
}

t.test('CRI calls over gRPC on a unix socket', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cri-client-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socket = path.join(dir, 'cri.sock');
  const seen: { path: string; contentType: string; request: Record<string, unknown> }[] = [];
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const method = String(headers[':path']).split('/').pop()!;
      const request = unframe(`${method}Request`, Buffer.concat(chunks));
      seen.push({ path: String(headers[':path']), contentType: String(headers['content-type']), request });
      if (method === 'StopPodSandbox') {
        // A trailers-only error answer, as grpc-go sends for a failed call.
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': encodeURIComponent('sandbox "x" not found') }, { endStream: true });
        return;
      }
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      if (method === 'RunPodSandbox') stream.end(frame('RunPodSandboxResponse', { pod_sandbox_id: 'sb-1' }));
      else if (method === 'PodSandboxStatus') {
        stream.end(frame('PodSandboxStatusResponse', {
          status: { id: 'sb-1', metadata: { name: 'web', namespace: 'team-a', uid: 'u-1' }, state: 'SANDBOX_READY', network: { ip: '10.240.1.4' } },
          info: { info: '{"pid":42}' },
        }));
      } else stream.end(frame(`${method}Response`, {}));
    });
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const cri = new CriClient(socket, 10_000);
  t.teardown(() => cri.close());
  const id = await cri.runPodSandbox({
    metadata: { name: 'web', namespace: 'team-a', uid: 'u-1' },
    dns_config: { servers: ['10.0.0.10'], searches: ['svc.cluster.local'] },
    port_mappings: [{ protocol: 'TCP', container_port: 8080, host_port: 18080 }],
  });
  t.equal(id, 'sb-1', 'RunPodSandbox answer decoded');
  t.equal(seen[0]?.path, '/runtime.v1.RuntimeService/RunPodSandbox');
  t.equal(seen[0]?.contentType, 'application/grpc');
  t.match(seen[0]?.request, {
    config: {
      metadata: { name: 'web', namespace: 'team-a', uid: 'u-1' },
      dns_config: { servers: ['10.0.0.10'], searches: ['svc.cluster.local'] },
      port_mappings: [{ protocol: 'TCP', container_port: 8080, host_port: 18080 }],
    },
  }, 'the request the runtime decodes has every field');

  const st = await cri.podSandboxStatus('sb-1', true);
  t.match(st, { status: { id: 'sb-1', state: 'SANDBOX_READY', network: { ip: '10.240.1.4' }, metadata: { name: 'web' } }, info: { info: '{"pid":42}' } });
  t.same(seen[1]?.request, { pod_sandbox_id: 'sb-1', verbose: true });

  const err = await cri.stopPodSandbox('x').then(() => undefined, (e: unknown) => e);
  t.ok(err instanceof CriError, 'a non-OK status rejects with CriError');
  t.match(err, { method: 'StopPodSandbox', status: 5, details: 'sandbox "x" not found' });
  await cri.removePodSandbox('sb-1');
  t.equal(seen.at(-1)?.path, '/runtime.v1.RuntimeService/RemovePodSandbox', 'the session keeps working after an error');
});
