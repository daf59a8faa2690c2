// A small CRI v1 client (the kubelet's side of the runtime API) for the lab
// tests and benchmarks: gRPC over a unix socket with node:http2, messages
// encoded by protobufjs from the subset of the CRI api.proto written below
// (runtime.v1, field numbers as in k8s.io/cri-api; only what pod sandboxes
// need). Unknown fields in answers are skipped by the decoder, so a newer
// runtime's replies still parse.
import http2 from 'node:http2';
import net from 'node:net';
import protobuf from 'protobufjs';

const CRI_PROTO = `
syntax = "proto3";
package runtime.v1;
message VersionRequest { string version = 1; }
message VersionResponse { string version = 1; string runtime_name = 2; string runtime_version = 3; string runtime_api_version = 4; }
message DNSConfig { repeated string servers = 1; repeated string searches = 2; repeated string options = 3; }
enum Protocol { TCP = 0; UDP = 1; SCTP = 2; }
message PortMapping { Protocol protocol = 1; int32 container_port = 2; int32 host_port = 3; string host_ip = 4; }
message PodSandboxMetadata { string name = 1; string uid = 2; string namespace = 3; uint32 attempt = 4; }
message LinuxPodSandboxConfig { string cgroup_parent = 1; }
message PodSandboxConfig {
  PodSandboxMetadata metadata = 1; string hostname = 2; string log_directory = 3; DNSConfig dns_config = 4;
  repeated PortMapping port_mappings = 5; map<string, string> labels = 6; map<string, string> annotations = 7;
  LinuxPodSandboxConfig linux = 8;
}
message RunPodSandboxRequest { PodSandboxConfig config = 1; string runtime_handler = 2; }
message RunPodSandboxResponse { string pod_sandbox_id = 1; }
message StopPodSandboxRequest { string pod_sandbox_id = 1; }
message StopPodSandboxResponse {}
message RemovePodSandboxRequest { string pod_sandbox_id = 1; }
message RemovePodSandboxResponse {}
message PodSandboxStatusRequest { string pod_sandbox_id = 1; bool verbose = 2; }
message PodIP { string ip = 1; }
message PodSandboxNetworkStatus { string ip = 1; repeated PodIP additional_ips = 2; }
enum PodSandboxState { SANDBOX_READY = 0; SANDBOX_NOTREADY = 1; }
message PodSandboxStatus {
  string id = 1; PodSandboxMetadata metadata = 2; PodSandboxState state = 3; int64 created_at = 4;
  PodSandboxNetworkStatus network = 5; map<string, string> labels = 7; map<string, string> annotations = 8;
}
message PodSandboxStatusResponse { PodSandboxStatus status = 1; map<string, string> info = 2; }
message PodSandboxFilter { string id = 1; }
message ListPodSandboxRequest { PodSandboxFilter filter = 1; }
message PodSandbox { string id = 1; PodSandboxMetadata metadata = 2; PodSandboxState state = 3; int64 created_at = 4; }
message ListPodSandboxResponse { repeated PodSandbox items = 1; }
message StatusRequest { bool verbose = 1; }
message RuntimeCondition { string type = 1; bool status = 2; string reason = 3; string message = 4; }
message RuntimeStatus { repeated RuntimeCondition conditions = 1; }
message StatusResponse { RuntimeStatus status = 1; map<string, string> info = 2; }
`;

const root = protobuf.parse(CRI_PROTO, { keepCase: true }).root;
/** A CRI message type by name (e.g. 'RunPodSandboxRequest'), for tests that play the runtime's side. */
export const criType = (name: string): protobuf.Type => root.lookupType(`runtime.v1.${name}`);
const type = criType;

export interface PodSandboxMetadata {
  name: string;
  uid: string;
  namespace: string;
  attempt?: number;
}
export interface PortMapping {
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  container_port: number;
  host_port: number;
  host_ip?: string;
}
export interface PodSandboxConfig {
  metadata: PodSandboxMetadata;
  hostname?: string;
  log_directory?: string;
  dns_config?: { servers?: string[]; searches?: string[]; options?: string[] };
  port_mappings?: PortMapping[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  linux?: { cgroup_parent?: string };
}
export interface PodSandboxStatus {
  id: string;
  metadata: PodSandboxMetadata;
  state: 'SANDBOX_READY' | 'SANDBOX_NOTREADY';
  network?: { ip?: string };
}

/** A gRPC call that ended with a non-OK status. */
export class CriError extends Error {
  constructor(
    readonly method: string,
    readonly status: number,
    readonly details: string,
  ) {
    super(`CRI ${method}: gRPC status ${status}: ${details}`);
  }
}

export class CriClient {
  private session: http2.ClientHttp2Session | undefined;

  constructor(
    readonly socketPath: string,
    private readonly timeoutMs = 120_000,
  ) {}

  private connect(): http2.ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    const session = http2.connect('http://localhost', { createConnection: () => net.connect(this.socketPath) });
    session.on('error', () => {}); // surfaced by the pending calls
    session.unref();
    this.session = session;
    return session;
  }

  /** One unary call: `service/method` with request type `method + 'Request'`. */
  async call<T>(method: string, request: Record<string, unknown>, service = 'RuntimeService'): Promise<T> {
    const reqType = type(`${method}Request`);
    const resType = type(`${method}Response`);
    const body = Buffer.from(reqType.encode(reqType.fromObject(request)).finish());
    const frame = Buffer.alloc(5 + body.length);
    frame.writeUInt32BE(body.length, 1);
    body.copy(frame, 5);
    const session = this.connect();
    return new Promise<T>((resolve, reject) => {
      const stream = session.request({ ':method': 'POST', ':path': `/runtime.v1.${service}/${method}`, 'content-type': 'application/grpc', te: 'trailers' });
      const chunks: Buffer[] = [];
      let status: number | undefined;
      let details = '';
      const takeStatus = (h: http2.IncomingHttpHeaders): void => {
        if (h['grpc-status'] !== undefined) {
          status = Number(h['grpc-status']);
          details = decodeURIComponent(String(h['grpc-message'] ?? ''));
        }
      };
      const timer = setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), this.timeoutMs);
      stream.on('response', takeStatus); // a trailers-only answer (errors) carries the status in the headers
      stream.on('trailers', takeStatus);
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('error', (err: Error) => {
        clearTimeout(timer);
        reject(err);
      });
      stream.on('close', () => {
        clearTimeout(timer);
        if (status === undefined) return reject(new CriError(method, -1, 'stream closed without a gRPC status (timeout or connection lost)'));
        if (status !== 0) return reject(new CriError(method, status, details));
        const data = Buffer.concat(chunks);
        const len = data.length >= 5 ? data.readUInt32BE(1) : 0;
        const msg = resType.decode(data.subarray(5, 5 + len));
        resolve(resType.toObject(msg, { enums: String, longs: String, defaults: true }) as T);
      });
      stream.end(frame);
    });
  }

  version(): Promise<{ runtime_name: string; runtime_version: string; runtime_api_version: string }> {
    return this.call('Version', { version: 'v1' });
  }

  async runPodSandbox(config: PodSandboxConfig, runtimeHandler = ''): Promise<string> {
    return (await this.call<{ pod_sandbox_id: string }>('RunPodSandbox', { config, runtime_handler: runtimeHandler })).pod_sandbox_id;
  }

  async stopPodSandbox(id: string): Promise<void> {
    await this.call('StopPodSandbox', { pod_sandbox_id: id });
  }

  async removePodSandbox(id: string): Promise<void> {
    await this.call('RemovePodSandbox', { pod_sandbox_id: id });
  }

  /** The sandbox's status; `info` (verbose) is containerd's JSON (pid, netns path, CNI result). */
  async podSandboxStatus(id: string, verbose = false): Promise<{ status: PodSandboxStatus; info: Record<string, string> }> {
    return this.call('PodSandboxStatus', { pod_sandbox_id: id, verbose });
  }

  async listPodSandbox(): Promise<{ id: string; metadata: PodSandboxMetadata; state: string }[]> {
    return (await this.call<{ items: { id: string; metadata: PodSandboxMetadata; state: string }[] }>('ListPodSandbox', {})).items;
  }

  /** Runtime conditions (RuntimeReady, NetworkReady); `info` (verbose) has containerd's loaded CNI config under "cniconfig". */
  status(verbose = false): Promise<{ status: { conditions: { type: string; status: boolean; reason: string; message: string }[] }; info: Record<string, string> }> {
    return this.call('Status', { verbose });
  }

  close(): void {
    this.session?.close();
    this.session = undefined;
  }
}
