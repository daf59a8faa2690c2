// NetworkPolicy: the API objects the policy compiler reads, and the compiled,
// per-endpoint form both dataplanes program. The compiled form is the only
// thing a dataplane sees of policy: it never reads API objects or selectors.
//
// Every address carries its family so IPv6 can follow without a redesign.

export type IpFamily = 'ipv4';
export type L4Protocol = 'TCP' | 'UDP' | 'SCTP';

// ---------------------------------------------------------------------------
// API objects (networking.k8s.io/v1 and core/v1, the fields policy uses)
// ---------------------------------------------------------------------------

export interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[];
}
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}
export interface IPBlock {
  cidr: string;
  except?: string[];
}
export interface NetworkPolicyPeer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  ipBlock?: IPBlock;
}
export interface NetworkPolicyPort {
  /** Default TCP. */
  protocol?: string;
  /** A number or a named container port; absent = every port of the protocol. */
  port?: number | string;
  endPort?: number;
}
export interface NetworkPolicyIngressRule {
  from?: NetworkPolicyPeer[];
  ports?: NetworkPolicyPort[];
}
export interface NetworkPolicyEgressRule {
  to?: NetworkPolicyPeer[];
  ports?: NetworkPolicyPort[];
}
export interface NetworkPolicy {
  metadata: { name: string; namespace: string; uid?: string; resourceVersion?: string };
  spec: {
    podSelector: LabelSelector;
    ingress?: NetworkPolicyIngressRule[];
    egress?: NetworkPolicyEgressRule[];
    policyTypes?: string[];
  };
  /**
   * Set by a source that could not read the object (why), with what it could
   * read of metadata: the compiler then treats the policy as broken and fails
   * closed (control/policy/parse.ts).
   */
  unreadable?: string;
}

export interface PolicyNamespace {
  name: string;
  labels: Record<string, string>;
}

/** A pod as policy sees it: where it is, its labels, its named ports. */
export interface PolicyPod {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  /** Pod IPs (any node). A pod without an IP cannot be a peer. */
  ips: Array<{ family: IpFamily; address: string }>;
  /** Named container ports, for `port: "http"` in a policy. */
  namedPorts: Array<{ name: string; protocol: L4Protocol; port: number }>;
}

/** Everything the compiler needs: a consistent snapshot of the cluster (or of the policy directory). */
export interface PolicySnapshot {
  policies: NetworkPolicy[];
  namespaces: PolicyNamespace[];
  pods: PolicyPod[];
}

// ---------------------------------------------------------------------------
// Compiled form: per endpoint, per direction, a union of rules
// ---------------------------------------------------------------------------

/** A peer address range: `cidr` minus every `except` (pods become /32s). */
export interface PeerCidr {
  family: IpFamily;
  cidr: string;
  except: string[];
}

/** An inclusive port range of one protocol (a single port has port === endPort). */
export interface PortRange {
  protocol: L4Protocol;
  port: number;
  endPort: number;
}

/**
 * One allow rule: a packet matches if its remote address is in `peers` and its
 * protocol/destination port in `ports`. `peers: null` = any address,
 * `ports: null` = any protocol and port (ICMP included).
 */
export interface CompiledRule {
  peers: PeerCidr[] | null;
  ports: PortRange[] | null;
  /** The policies this rule came from, "namespace/name", for debug views. */
  sources: string[];
}

/**
 * One direction of one endpoint. `isolated: false` = no policy selects the pod
 * for this direction: everything is allowed. `isolated: true` with no rules =
 * default deny. Replies of allowed connections are always allowed (stateful),
 * and so is traffic between the node itself and its pods (kubelet probes).
 */
export interface DirectionPolicy {
  isolated: boolean;
  rules: CompiledRule[];
}

/** The compiled policy of one local endpoint. */
export interface EndpointPolicy {
  family: IpFamily;
  /** The pod's address on this node. */
  address: string;
  /** "namespace/name" of the pod, for debug views and metrics. */
  pod?: string;
  /** Traffic to the pod. */
  ingress: DirectionPolicy;
  /** Traffic from the pod. */
  egress: DirectionPolicy;
}

/** A problem with one policy: it is skipped (or its bad part is), the rest are enforced. */
export interface PolicyProblem {
  policy: string;
  message: string;
  /** The policy could not be read at all: it isolates what it may select, with no rule (fail closed). */
  broken?: true;
}

// ---------------------------------------------------------------------------
// Where snapshots come from, and what the agent asks at ADD
// ---------------------------------------------------------------------------

/** A source of cluster state for policy: the Kubernetes watches or a watched directory. */
export interface PolicySource {
  /** The current snapshot, or undefined until the first full sync. */
  snapshot(): PolicySnapshot | undefined;
  /** Called after each change; the listener coalesces. Returns an unsubscribe. */
  onChange(listener: () => void): () => void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** What the agent asks when it creates an endpoint. */
export interface PolicyProvider {
  /**
   * The compiled policy a new local endpoint starts with. `undefined` = this
   * node enforces no policy (allow all). Before the source's first sync the
   * answer is a default deny in both directions, never "allow".
   */
  policyFor(pod: { namespace?: string; name?: string; family: IpFamily; address: string }): EndpointPolicy | undefined;
}
