/* SNAT state in our own maps (why not kernel conntrack: docs/ebpf.md).
 * A flow is a pair: vnet_snat_fwd {pod tuple} -> {primary ip, nat port} and
 * vnet_snat_rev {primary ip, remote, nat port} -> {pod ip, pod port}. Each
 * side refreshes its own last_seen; a pair is dead only when both are stale.
 * Ports are claimed with BPF_NOEXIST on the reverse map, so two CPUs can
 * never hand out the same (remote, nat port).
 *
 * TCP close tracking (like conntrack, minus window checks): a FIN or RST in
 * either direction is recorded in both entries' flags; a pair that saw RST,
 * or FIN both ways, gets a short idle timeout instead of the established one,
 * after which its port is free again. A SYN on a closed pair restarts it
 * (same port, see snat_v4_lookup). Flags are set with a plain read-modify-write: two CPUs marking
 * the same entry at the same instant can lose a bit, which only leaves the
 * pair on the longer timeout. */
#ifndef VNET_LIB_NAT_H
#define VNET_LIB_NAT_H

#include "defs.h"
#include "maps.h"
#include "pkt.h"
#include "rewrite.h"

/* Port probing per new flow, bounded: random ports first, then a linear run
 * from a random start. Linear probing alone clusters (every new flow takes the
 * first free port after a random start, lengthening runs of taken ports): at
 * ~85% of a remote ip:port's range it began failing with free ports left, and
 * every failure is a dropped SYN, i.e. a 1 s retransmit stall for the client.
 * Independent random probes miss only with probability fill^32; the linear
 * run still guarantees that a range of <= 32 ports is searched completely. */
#define VNET_NAT_RANDOM_PROBES 32
#define VNET_NAT_LINEAR_PROBES 32

static __always_inline __u64 nat_timeout(const struct vnet_config *cfg, __u8 proto)
{
	if (proto == IPPROTO_TCP)
		return cfg->tcp_timeout_ns;
	if (proto == IPPROTO_UDP)
		return cfg->udp_timeout_ns;
	return cfg->icmp_timeout_ns;
}

#define VNET_NAT_F_FIN_BOTH (VNET_NAT_F_FIN_OUT | VNET_NAT_F_FIN_IN)

static __always_inline int nat_tcp_closed(__u16 flags)
{
	return (flags & VNET_NAT_F_RST) || (flags & VNET_NAT_F_FIN_BOTH) == VNET_NAT_F_FIN_BOTH;
}

static __always_inline __u64 min_u64(__u64 a, __u64 b)
{
	return a < b ? a : b;
}

/* The idle timeout of a pair, given the close flags known for it. */
static __always_inline __u64 nat_pair_timeout(const struct vnet_config *cfg, __u8 proto, __u16 flags)
{
	if (proto != IPPROTO_TCP)
		return nat_timeout(cfg, proto);
	if (flags & VNET_NAT_F_RST)
		return min_u64(cfg->tcp_rst_timeout_ns, cfg->tcp_timeout_ns);
	if ((flags & VNET_NAT_F_FIN_BOTH) == VNET_NAT_F_FIN_BOTH)
		return min_u64(cfg->tcp_fin_timeout_ns, cfg->tcp_timeout_ns);
	return cfg->tcp_timeout_ns;
}

/* The VNET_NAT_F_* bits a TCP packet sets; dir_fin is the FIN bit of its direction. */
static __always_inline __u16 nat_close_bits(const struct vnet_pkt *p, __u16 dir_fin)
{
	__u16 bits = 0;

	if (p->proto != IPPROTO_TCP)
		return 0;
	if (p->tcp_flags & TCP_FLAG_RST)
		bits |= VNET_NAT_F_RST;
	if (p->tcp_flags & TCP_FLAG_FIN)
		bits |= dir_fin;
	return bits;
}

static __always_inline void nat_mark(struct vnet_nat_entry *e, __u16 bits)
{
	if ((e->flags & bits) != bits)
		e->flags |= bits;
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

/* A new mapping may start only from a flow's first packet. */
static __always_inline int snat_may_create(const struct vnet_pkt *p)
{
	if (p->proto == IPPROTO_TCP)
		return (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST)) == TCP_FLAG_SYN;
	if (p->proto == IPPROTO_UDP)
		return 1;
	return p->proto == IPPROTO_ICMP && p->icmp_type == ICMP_ECHO;
}

/* The live forward mapping of fkey, refreshed and marked with the packet's
 * close bits; a dead pair is removed. A new SYN on a closed pair restarts it
 * in place (*restarted = 1): same NAT port, flags cleared. Keeping the port
 * matters: the remote may still hold a TIME_WAIT socket for that 4-tuple,
 * and it accepts a new SYN from the *same* pod socket tuple (its ISN and
 * timestamps only grow), while another flow handed that port is rejected by
 * PAWS (measured: the SYN is lost, a 1 s retransmit stall). */
static __always_inline struct vnet_nat_entry *snat_v4_lookup(const struct vnet_config *cfg,
							     const struct vnet_nat_tuple *fkey,
							     const struct vnet_pkt *p, __u64 now, int *restarted)
{
	struct vnet_nat_entry *fwd = bpf_map_lookup_elem(&vnet_snat_fwd, fkey);
	int syn = p->proto == IPPROTO_TCP && snat_may_create(p);
	struct vnet_nat_entry *rev;
	struct vnet_nat_tuple rkey;
	__u16 bits;

	*restarted = 0;
	if (!fwd)
		return NULL;
	nat_rev_key(&rkey, fwd->addr, fwd->port, fkey);
	if (!(syn && nat_tcp_closed(fwd->flags)) &&
	    !is_stale(fwd->last_seen_ns, now, nat_pair_timeout(cfg, fkey->proto, fwd->flags))) {
		fwd->last_seen_ns = now;
		goto live;
	}
	rev = bpf_map_lookup_elem(&vnet_snat_rev, &rkey);
	if (rev && rev->addr == fkey->saddr && rev->port == fkey->sport) {
		bits = fwd->flags | rev->flags;
		if (syn && nat_tcp_closed(bits)) {
			fwd->flags = 0;
			rev->flags = 0;
			fwd->last_seen_ns = now;
			rev->last_seen_ns = now;
			*restarted = 1;
			return fwd;
		}
		if (!is_stale(rev->last_seen_ns, now, nat_pair_timeout(cfg, fkey->proto, bits))) {
			fwd->last_seen_ns = now;
			goto live;
		}
		bpf_map_delete_elem(&vnet_snat_rev, &rkey);
	}
	bpf_map_delete_elem(&vnet_snat_fwd, fkey);
	return NULL;

live:
	bits = nat_close_bits(p, VNET_NAT_F_FIN_OUT);
	if (bits) {
		nat_mark(fwd, bits);
		rev = bpf_map_lookup_elem(&vnet_snat_rev, &rkey);
		if (rev && rev->addr == fkey->saddr && rev->port == fkey->sport)
			nat_mark(rev, bits);
	}
	return fwd;
}

/* Is the reverse slot at rkey free? A taken slot whose pair is dead is freed
 * here. A plain lookup first: a BPF_NOEXIST update on an LRU map takes a free
 * node (and may evict to get one) even when it then fails with EEXIST.
 * Returns 1 if the slot may be claimed. */
static __always_inline int snat_v4_reclaim(const struct vnet_config *cfg, const struct vnet_nat_tuple *rkey,
					   __u64 now)
{
	struct vnet_nat_entry *rev = bpf_map_lookup_elem(&vnet_snat_rev, rkey);
	struct vnet_nat_entry *fwd;
	struct vnet_nat_tuple fkey;

	if (!rev)
		return 1;
	if (!is_stale(rev->last_seen_ns, now, nat_pair_timeout(cfg, rkey->proto, rev->flags)))
		return 0;
	nat_fwd_key(&fkey, rev, rkey);
	fwd = bpf_map_lookup_elem(&vnet_snat_fwd, &fkey);
	if (fwd && fwd->port == rkey->sport) {
		if (!is_stale(fwd->last_seen_ns, now, nat_pair_timeout(cfg, rkey->proto, rev->flags | fwd->flags)))
			return 0;
		bpf_map_delete_elem(&vnet_snat_fwd, &fkey);
	}
	bpf_map_delete_elem(&vnet_snat_rev, rkey);
	return 1;
}

/* An update that failed for another reason than "slot taken": the LRU map
 * found no node to reuse (-ENOMEM; in practice only if every node sits in
 * other CPUs' pending lists). Errno values are the kernel's ABI. */
#define VNET_EEXIST 17

/* Create a mapping for fkey; *nat_port gets the port (network order).
 * Returns VNET_NAT_NO_PORT if no port was free after the bounded probing,
 * VNET_NAT_MAP_FULL if the maps could not take an entry. */
#define VNET_NAT_NO_PORT (-1)
#define VNET_NAT_MAP_FULL (-2)
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
	long err;

	if (min == 0 || max < min)
		return VNET_NAT_NO_PORT;
	range = max - min + 1;
	start = bpf_get_prandom_u32() % range;
	nat_rev_key(&rkey, cfg->primary_ip, 0, fkey);
	for (i = 0; i < VNET_NAT_RANDOM_PROBES + VNET_NAT_LINEAR_PROBES; i++) {
		__u32 off = i < VNET_NAT_RANDOM_PROBES ? bpf_get_prandom_u32() : start + i;

		rkey.sport = bpf_htons((__u16)(min + off % range));
		/* NOEXIST: another CPU may claim the same slot between the two. */
		if (!snat_v4_reclaim(cfg, &rkey, now))
			continue;
		err = bpf_map_update_elem(&vnet_snat_rev, &rkey, &rval, BPF_NOEXIST);
		if (err == 0) {
			claimed = 1;
			break;
		}
		if (err != -VNET_EEXIST)
			return VNET_NAT_MAP_FULL;
	}
	if (!claimed)
		return VNET_NAT_NO_PORT;
	fval.port = rkey.sport;
	err = bpf_map_update_elem(&vnet_snat_fwd, fkey, &fval, BPF_NOEXIST);
	if (err != 0) {
		bpf_map_delete_elem(&vnet_snat_rev, &rkey);
		if (err != -VNET_EEXIST)
			return VNET_NAT_MAP_FULL;
		/* Another CPU created this flow's mapping first: use theirs. */
		existing = bpf_map_lookup_elem(&vnet_snat_fwd, fkey);
		if (!existing)
			return VNET_NAT_NO_PORT;
		*nat_port = existing->port;
		return 0;
	}
	*nat_port = rkey.sport;
	return 0;
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
