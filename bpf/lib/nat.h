/* SNAT state in our own maps (why not kernel conntrack: docs/ebpf.md).
 * A flow is a pair: vnet_snat_fwd {pod tuple} -> {primary ip, nat port} and
 * vnet_snat_rev {primary ip, remote, nat port} -> {pod ip, pod port}. Each
 * side refreshes its own last_seen; a pair is dead only when both are stale.
 * Ports are claimed with BPF_NOEXIST on the reverse map, so two CPUs can
 * never hand out the same (remote, nat port). */
#ifndef VNET_LIB_NAT_H
#define VNET_LIB_NAT_H

#define VNET_NAT_PROBES 32 /* bounded port probing per new flow */

static __always_inline __u64 nat_timeout(const struct vnet_config *cfg, __u8 proto)
{
	if (proto == IPPROTO_TCP)
		return cfg->tcp_timeout_ns;
	if (proto == IPPROTO_UDP)
		return cfg->udp_timeout_ns;
	return cfg->icmp_timeout_ns;
}

static __always_inline int is_stale(__u64 last_seen, __u64 now, __u64 timeout)
{
	return now > last_seen && now - last_seen > timeout;
}

static __always_inline void nat_rev_key(struct vnet_nat_tuple *rkey, __u32 nat_addr, __u16 nat_port,
					const struct vnet_nat_tuple *fkey)
{
	__builtin_memset(rkey, 0, sizeof(*rkey));
	rkey->saddr = nat_addr;
	rkey->daddr = fkey->daddr;
	rkey->sport = nat_port;
	rkey->dport = fkey->dport;
	rkey->proto = fkey->proto;
}

static __always_inline void nat_fwd_key(struct vnet_nat_tuple *fkey, const struct vnet_nat_entry *rev,
					const struct vnet_nat_tuple *rkey)
{
	__builtin_memset(fkey, 0, sizeof(*fkey));
	fkey->saddr = rev->addr;
	fkey->daddr = rkey->daddr;
	fkey->sport = rev->port;
	fkey->dport = rkey->dport;
	fkey->proto = rkey->proto;
}

/* The live forward mapping of fkey, refreshed; a dead pair is removed. */
static __always_inline struct vnet_nat_entry *snat_v4_lookup(const struct vnet_config *cfg,
							     const struct vnet_nat_tuple *fkey, __u64 now)
{
	struct vnet_nat_entry *fwd = bpf_map_lookup_elem(&vnet_snat_fwd, fkey);
	struct vnet_nat_entry *rev;
	struct vnet_nat_tuple rkey;
	__u64 timeout;

	if (!fwd)
		return NULL;
	timeout = nat_timeout(cfg, fkey->proto);
	nat_rev_key(&rkey, fwd->addr, fwd->port, fkey);
	if (!is_stale(fwd->last_seen_ns, now, timeout)) {
		fwd->last_seen_ns = now;
		return fwd;
	}
	rev = bpf_map_lookup_elem(&vnet_snat_rev, &rkey);
	if (rev && rev->addr == fkey->saddr && rev->port == fkey->sport) {
		if (!is_stale(rev->last_seen_ns, now, timeout)) {
			fwd->last_seen_ns = now;
			return fwd;
		}
		bpf_map_delete_elem(&vnet_snat_rev, &rkey);
	}
	bpf_map_delete_elem(&vnet_snat_fwd, fkey);
	return NULL;
}

/* The reverse entry at rkey is taken: free it if its pair is dead.
 * Returns 1 if the slot may be claimed again. */
static __always_inline int snat_v4_reclaim(const struct vnet_config *cfg, const struct vnet_nat_tuple *rkey,
					   __u64 now)
{
	struct vnet_nat_entry *rev = bpf_map_lookup_elem(&vnet_snat_rev, rkey);
	struct vnet_nat_entry *fwd;
	struct vnet_nat_tuple fkey;
	__u64 timeout = nat_timeout(cfg, rkey->proto);

	if (!rev)
		return 1;
	if (!is_stale(rev->last_seen_ns, now, timeout))
		return 0;
	nat_fwd_key(&fkey, rev, rkey);
	fwd = bpf_map_lookup_elem(&vnet_snat_fwd, &fkey);
	if (fwd && fwd->port == rkey->sport) {
		if (!is_stale(fwd->last_seen_ns, now, timeout))
			return 0;
		bpf_map_delete_elem(&vnet_snat_fwd, &fkey);
	}
	bpf_map_delete_elem(&vnet_snat_rev, rkey);
	return 1;
}

/* Create a mapping for fkey; *nat_port gets the port (network order).
 * Returns <0 if no port was free after VNET_NAT_PROBES tries. */
static __always_inline int snat_v4_new(const struct vnet_config *cfg, const struct vnet_nat_tuple *fkey,
				       __u64 now, __u16 *nat_port)
{
	struct vnet_nat_entry rval = { .addr = fkey->saddr, .port = fkey->sport, .last_seen_ns = now };
	struct vnet_nat_entry fval = { .addr = cfg->primary_ip, .last_seen_ns = now };
	struct vnet_nat_entry *existing;
	struct vnet_nat_tuple rkey;
	__u32 min = cfg->nat_port_min, max = cfg->nat_port_max;
	__u32 range, start, i;
	int claimed = 0;

	if (min == 0 || max < min)
		return -1;
	range = max - min + 1;
	start = bpf_get_prandom_u32() % range;
	nat_rev_key(&rkey, cfg->primary_ip, 0, fkey);
	for (i = 0; i < VNET_NAT_PROBES; i++) {
		rkey.sport = bpf_htons((__u16)(min + (start + i) % range));
		if (bpf_map_update_elem(&vnet_snat_rev, &rkey, &rval, BPF_NOEXIST) == 0) {
			claimed = 1;
			break;
		}
		if (snat_v4_reclaim(cfg, &rkey, now) &&
		    bpf_map_update_elem(&vnet_snat_rev, &rkey, &rval, BPF_NOEXIST) == 0) {
			claimed = 1;
			break;
		}
	}
	if (!claimed)
		return -1;
	fval.port = rkey.sport;
	if (bpf_map_update_elem(&vnet_snat_fwd, fkey, &fval, BPF_NOEXIST) != 0) {
		/* Another CPU created this flow's mapping first: use theirs. */
		bpf_map_delete_elem(&vnet_snat_rev, &rkey);
		existing = bpf_map_lookup_elem(&vnet_snat_fwd, fkey);
		if (!existing)
			return -1;
		*nat_port = existing->port;
		return 0;
	}
	*nat_port = rkey.sport;
	return 0;
}

/* A new mapping may start only from a flow's first packet. */
static __always_inline int snat_may_create(const struct vnet_pkt *p)
{
	if (p->proto == IPPROTO_TCP)
		return (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST)) == TCP_FLAG_SYN;
	if (p->proto == IPPROTO_UDP)
		return 1;
	return p->proto == IPPROTO_ICMP && p->icmp_type == ICMP_ECHO;
}

/* Inbound flows (remote -> pod, not SNATed): their replies are never translated. */
static __always_inline void inbound_record(const struct vnet_pkt *p, __u64 now)
{
	struct vnet_nat_tuple key;
	struct vnet_flow_entry *flow, fresh = { .last_seen_ns = now };

	pkt_ingress_tuple(p, &key);
	flow = bpf_map_lookup_elem(&vnet_inbound, &key);
	if (flow)
		flow->last_seen_ns = now;
	else
		bpf_map_update_elem(&vnet_inbound, &key, &fresh, BPF_ANY);
}

static __always_inline int inbound_is_reply(const struct vnet_config *cfg, const struct vnet_pkt *p, __u64 now)
{
	struct vnet_nat_tuple key;
	struct vnet_flow_entry *flow;

	if (!p->has_l4)
		return 0;
	pkt_egress_tuple(p, &key);
	flow = bpf_map_lookup_elem(&vnet_inbound, &key);
	if (!flow)
		return 0;
	if (is_stale(flow->last_seen_ns, now, nat_timeout(cfg, p->proto))) {
		bpf_map_delete_elem(&vnet_inbound, &key);
		return 0;
	}
	flow->last_seen_ns = now;
	return 1;
}

#endif
