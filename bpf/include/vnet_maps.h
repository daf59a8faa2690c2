/* Map key/value layouts shared by bpf/ (built against vmlinux.h) and native/
 * (built against <linux/types.h>). TS mirrors them in
 * control/dataplane/ebpf/layouts.ts; test/bpf/layouts.test.ts checks that the
 * sizes and offsets the kernel reports for the loaded object match.
 *
 * Byte order: addresses and ports are in network byte order (as on the wire),
 * everything else is host order.
 */
#ifndef VNET_MAPS_H
#define VNET_MAPS_H

/* Capacities (max_entries). Changing one changes the map definition, so a
 * pinned map from an older build is no longer reusable: unloadAll() first. */
#define VNET_ENDPOINTS_MAX 1024
#define VNET_CIDRS_MAX 256
#define VNET_NAT_MAX 65536
#define VNET_INBOUND_MAX 65536
/* vnet_reasons slots: room for reasons appended later, so adding one does
 * not change the map definition (which would need a drain on upgrade). It
 * replaced vnet_counters (one slot per reason): a new name, so a reload over
 * an older build's pins creates it instead of failing on the old one. */
#define VNET_COUNTERS_MAX 64
#define VNET_POL_EPS_MAX VNET_ENDPOINTS_MAX
#define VNET_POL_IDS_MAX 4096
#define VNET_POL_CIDRS_MAX 262144
#define VNET_POL_PORTS_MAX 262144
#define VNET_POL_FLOWS_MAX 65536
#define VNET_POL_DROPS_MAX (2 * VNET_ENDPOINTS_MAX)

/* The single key of the vnet_config array map. */
#define VNET_CONFIG_KEY 0

/* vnet_config.flags */
#define VNET_CFG_F_READY (1u << 0)             /* config written; until then every program passes */
#define VNET_CFG_F_FASTPATH_EXTERNAL (1u << 1) /* redirect non-VNet traffic too (no kube-proxy services) */
#define VNET_CFG_F_CT_CHECK (1u << 2)          /* consult kernel conntrack before bypassing the stack */

/* vnet_config.ctl_flags */
#define VNET_CTL_F_NIC_HOOK_CREATED (1u << 0) /* we created eth0's clsact qdisc: only then may we remove it */

/* vnet_cidr_info.flags */
#define VNET_CIDR_F_NOSNAT (1u << 0) /* VNet, peered, on-prem, wireserver: never SNAT */
#define VNET_CIDR_F_STACK (1u << 1)  /* e.g. the service CIDR: always hand to the kernel stack */

/* vnet_endpoints: key = pod IPv4 (__u32, network order). */
struct vnet_endpoint {
	__u32 ifindex; /* host-side veth */
	__u32 flags;   /* reserved, 0 */
	__u8 pod_mac[6];
	__u8 host_mac[6]; /* MAC of the host-side veth */
};

/* vnet_cidrs: LPM trie. */
struct vnet_lpm_key {
	__u32 prefixlen;
	__u32 addr;
};
struct vnet_cidr_info {
	__u32 flags;
};

struct vnet_config {
	__u32 primary_ip;  /* NIC primary IP, SNAT source */
	__u32 nic_ifindex; /* eth0 */
	__u8 nic_mac[6];
	__u16 flags;        /* VNET_CFG_F_* */
	__u16 nat_port_min; /* host order, inclusive */
	__u16 nat_port_max; /* host order, inclusive */
	__u32 ctl_flags;    /* VNET_CTL_F_*: control-plane bookkeeping, never read by programs */
	__u64 tcp_timeout_ns;
	__u64 udp_timeout_ns;
	__u64 icmp_timeout_ns;
	/* TCP pairs that saw a close (VNET_NAT_F_*): idle timeouts that replace
	 * tcp_timeout_ns (the smaller of the two applies). */
	__u64 tcp_fin_timeout_ns; /* FIN seen both ways: TIME_WAIT-like */
	__u64 tcp_rst_timeout_ns; /* RST seen either way */
};

/* A 5-tuple, always in the egress orientation (s = the pod side, d = remote).
 * ICMP echo: sport = echo id, dport = 0.
 *   vnet_snat_fwd key: {pod ip, remote ip, pod port, remote port}
 *   vnet_snat_rev key: {primary ip, remote ip, nat port, remote port}
 *   vnet_inbound  key: {pod ip, remote ip, pod port, remote port} */
struct vnet_nat_tuple {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* vnet_nat_entry.flags: TCP close tracking. Both entries of a pair carry the
 * pair's bits (whichever program sees a FIN/RST sets it in both), so either
 * entry alone knows the pair's timeout. */
#define VNET_NAT_F_FIN_OUT (1u << 0) /* the pod sent FIN (seen by to_nic) */
#define VNET_NAT_F_FIN_IN (1u << 1)  /* the remote sent FIN (seen by from_nic) */
#define VNET_NAT_F_RST (1u << 2)     /* either side sent RST */

/* Forward value: the translated source; reverse value: the original source. */
struct vnet_nat_entry {
	__u32 addr;
	__u16 port;
	__u16 flags; /* VNET_NAT_F_* (TCP), 0 otherwise */
	__u64 last_seen_ns; /* bpf_ktime_get_ns(), CLOCK_MONOTONIC */
};

struct vnet_flow_entry {
	__u64 last_seen_ns;
};

/* ---- NetworkPolicy (docs/ebpf.md "NetworkPolicy") --------------------------
 * Every key carries the address family; addresses are 16 bytes (IPv4 in the
 * first 4, the rest zero) so IPv6 can follow without a new layout. */
#define VNET_AF_INET 2

/* Direction of a check, seen from the local endpoint. */
#define VNET_POL_DIR_INGRESS 0
#define VNET_POL_DIR_EGRESS 1

/* vnet_pol_eps: key {family, dir = 0, addr} -> the endpoint's active policy ids.
 * vnet_pol_drops uses the same key with dir set. */
struct vnet_pol_ep_key {
	__u8 family;
	__u8 dir;
	__u8 pad[2];
	__u32 addr[4];
};

/* vnet_pol_ep.flags: a direction without its bit is not isolated (allow all). */
#define VNET_POL_F_INGRESS_ISOLATED (1u << 0)
#define VNET_POL_F_EGRESS_ISOLATED (1u << 1)

/* One 12-byte value, replaced in one update: that is the generation flip. */
struct vnet_pol_ep {
	__u32 ingress_id; /* a policy id (vnet_pol_ids), 0 = no rules */
	__u32 egress_id;
	__u32 flags; /* VNET_POL_F_* */
};

/* vnet_pol_cidrs: LPM trie. data = {id, family, addr}; prefixlen = 64 + the
 * CIDR's length. The longest entry containing a peer address says which port
 * set of the policy applies to that peer (the union of the ports of every rule
 * whose peers contain it); an except is an entry of its own. */
struct vnet_pol_cidr_key {
	__u32 prefixlen;
	__u32 id;
	__u8 family;
	__u8 pad[3];
	__u32 addr[4];
};

#define VNET_POL_M_ANY_PORT (1u << 0) /* every protocol and port, ICMP included */
struct vnet_pol_match {
	__u16 set;   /* port set index within the policy; 0 = none */
	__u16 flags; /* VNET_POL_M_* */
};

/* vnet_pol_ports: LPM trie. data = {id, set, proto, pad, port (network order)};
 * prefixlen = 64 + the port prefix length (a range is split into prefixes). */
struct vnet_pol_port_key {
	__u32 prefixlen;
	__u32 id;
	__u16 set;
	__u8 proto;
	__u8 pad;
	__u16 port;
	__u16 pad2;
};

struct vnet_pol_port_val {
	__u32 allow; /* 1; presence is what counts */
};

/* vnet_pol_ids: policy id -> digest of the compiled direction policy (the
 * control plane shares one id between endpoints with the same policy). */
struct vnet_pol_id_val {
	__u8 digest[16];
};

/* vnet_pol_flows: connections a local endpoint's policy admitted, keyed from
 * that endpoint's side (both directions of a connection map to one key).
 * ICMP echo: lport = echo id, rport = 0. No ports (later fragments, other
 * protocols): both 0. kind FRAG: a fragmented datagram whose first fragment
 * was admitted, lport = its IP id (network order), rport = 0; its later
 * fragments (no ports) pass on it. Value: struct vnet_flow_entry. */
#define VNET_POL_FLOW_CONN 0
#define VNET_POL_FLOW_FRAG 1
struct vnet_pol_flow_key {
	__u32 local[4];
	__u32 remote[4];
	__u16 lport;
	__u16 rport;
	__u8 proto;
	__u8 family;
	__u8 kind; /* VNET_POL_FLOW_* */
	__u8 pad;
};

/* Counter reasons: one central list. X(name, "label"); the label is what
 * counters() reports. Append only: the index is the vnet_reasons key. */
#define VNET_REASONS(X)                                   \
	X(FWD_LOCAL, "forwarded-local")                   \
	X(REDIRECT_NIC, "redirected-to-nic")              \
	X(FWD_FROM_NIC, "forwarded-from-nic")             \
	X(SNAT_NEW, "snat-new")                           \
	X(SNAT_HIT, "snat-hit")                           \
	X(REV_SNAT, "rev-snat")                           \
	X(PASS_STACK, "pass-to-stack")                    \
	X(PASS_CT_NAT, "pass-conntrack-nat")              \
	X(PASS_INBOUND_REPLY, "pass-inbound-reply")       \
	X(PASS_UNTRACKED, "pass-untracked")               \
	X(PASS_FRAGMENT, "pass-fragment")                 \
	X(PASS_IP_OPTIONS, "pass-ip-options")             \
	X(PASS_NOT_READY, "pass-not-ready")               \
	X(DROP_MALFORMED, "drop-malformed")               \
	X(DROP_SPOOFED, "drop-spoofed-source")            \
	X(DROP_FRAG_NEEDS_NAT, "drop-fragment-needs-nat") \
	X(DROP_NAT_NO_PORT, "drop-nat-port-exhausted")    \
	X(DROP_NAT_MAP_FULL, "drop-nat-map-full")         \
	X(DROP_NO_ENDPOINT, "drop-no-endpoint")           \
	X(DROP_REWRITE, "drop-rewrite-failed")            \
	X(POLICY_ALLOW, "policy-allow")                   \
	X(POLICY_ESTABLISHED, "policy-established")       \
	X(POLICY_ALLOW_HOST, "policy-allow-host")         \
	X(POLICY_ALLOW_SERVICE_REPLY, "policy-allow-service-reply") \
	X(DROP_POLICY_INGRESS, "drop-policy-ingress")     \
	X(DROP_POLICY_EGRESS, "drop-policy-egress")     \
	X(POLICY_MASQ_ORIGIN, "policy-masq-origin")     \
	X(POLICY_RELATED_ICMP, "policy-related-icmp")   \
	X(POLICY_RELATED_FRAGMENT, "policy-related-fragment")

#define VNET_REASON_ENUM(name, label) VNET_REASON_##name,
enum vnet_reason { VNET_REASONS(VNET_REASON_ENUM) VNET_REASON_MAX };
#undef VNET_REASON_ENUM
#ifdef __cplusplus
static_assert(VNET_REASON_MAX <= VNET_COUNTERS_MAX, "raise VNET_COUNTERS_MAX");
#else
_Static_assert(VNET_REASON_MAX <= VNET_COUNTERS_MAX, "raise VNET_COUNTERS_MAX");
#endif

#endif /* VNET_MAPS_H */
