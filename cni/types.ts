// The request/response types of the CNI protocol package, shared by the
// front end (cni/) and everything that serves it (control/agent, the daemon).
// cni/ imports nothing of control/. The result is always built in the newest
// spec shape (1.1.0); cni/ converts it down to the version the runtime asked for.

/** The dataplane that programs pods on a node. `iptables` is bridge + ebtables + iptables (the original's shape). */
export type DataplaneMode = 'iptables' | 'ebpf';

/** Where the node's pod pool comes from. */
export type PoolEnvironment = 'azure' | 'fileIpam' | 'static' | 'kubernetes';

export interface IpamConfig {
  type: string; // "azure-vnet-ipam"
  environment: PoolEnvironment;
  /** wireserver base URL; default http://168.63.129.16 */
  wireserverUrl: string;
  /** total time allowed for one wireserver request, ms */
  wireserverTimeoutMs: number;
  /** fileIpam: path of the interfaces.json file */
  interfacesFile?: string;
  /** static: the pod pool, as plain IPv4 addresses */
  addresses?: string[];
  /** static: the subnet the addresses belong to, e.g. 10.240.0.0/16 */
  subnet?: string;
  /** static: gateway override (default: first address of subnet) */
  gateway?: string;
}

/** The validated azure-vnet network configuration (one plugin entry of a conflist, with name/cniVersion). */
export interface NetConf {
  cniVersion: string;
  name: string;
  type: string;
  mode: 'bridge' | 'transparent';
  dataplane: DataplaneMode;
  /** Fall back to iptables if ebpf prerequisites are missing (only if asked). */
  dataplaneFallback: boolean;
  bridge: string; // default azure0
  master: string; // host NIC, default eth0
  /** Extra prefixes never SNATed (peered VNets, on-prem); the NIC's subnet is always included. */
  vnetCidrs: string[];
  /** Max pods (endpoints) on this node; default 250. */
  maxPods: number;
  logFile: string;
  logLevel: string;
  stateDir: string;
  /** Node daemon socket; when set and alive, calls are forwarded to the daemon. */
  daemonSocket?: string;
  /** bpffs pin root for ebpf mode */
  bpfRoot: string;
  nodeName: string;
  ipam: IpamConfig;
  /** The raw JSON object, so chained plugins and future keys survive untouched. */
  raw: Record<string, unknown>;
}

export interface Interface {
  name: string;
  mac: string;
  mtu?: number;
  sandbox?: string;
}
export interface IpConfig {
  /** CIDR notation, e.g. 10.240.0.5/16 */
  address: string;
  gateway?: string;
  interface?: number;
}
export interface Route {
  dst: string;
  gw?: string;
}
export interface Dns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

/** A CNI result in the 1.1.0 shape. */
export interface CniResult {
  cniVersion: string;
  interfaces?: Interface[];
  ips?: IpConfig[];
  routes?: Route[];
  dns?: Dns;
}

/** Flat CNI arguments for one call, as the runtime gave them. */
export interface CniCall {
  containerId: string;
  netns: string; // may be '' for DEL
  ifName: string;
  /** CNI_ARGS as key/value pairs (K8S_POD_NAME, K8S_POD_NAMESPACE, ...) */
  args: Record<string, string>;
  config: NetConf;
  prevResult?: CniResult;
}

/** One attachment named in a GC request (cni.dev/valid-attachments). */
export interface Attachment {
  containerId: string;
  ifName: string;
}

/** The control plane as the CNI front end sees it: one Agent per node (in the plugin process or the daemon). */
export interface AgentApi {
  add(call: CniCall): Promise<CniResult>;
  del(call: CniCall): Promise<void>;
  check(call: CniCall): Promise<void>;
  gc(config: NetConf, valid: Attachment[]): Promise<void>;
  status(config: NetConf): Promise<void>;
  /** IPAM-only verbs for azure-vnet-ipam used on its own. */
  ipamAdd(call: CniCall): Promise<CniResult>;
  ipamDel(call: CniCall): Promise<void>;
  close(): Promise<void>;
}
