/* NetworkPolicy checks (docs/ebpf.md "NetworkPolicy"). One check is one local
 * endpoint and one direction: a pod's egress for what it sends, a pod's
 * ingress for what is delivered to it. Order of a check:
 *   1. the endpoint has no vnet_pol_eps entry, or neither direction isolated:
 *      allow, nothing recorded (the common, policy-free case: one lookup);
 *   2. a live vnet_pol_flows entry (this endpoint admitted the connection
 *      before, in either direction): allow -- replies and established flows;
 *   3. the direction is not isolated: allow, and record the flow so that the
 *      replies pass the isolated other direction;
 *   4. the rules: the peer address in the policy's LPM trie gives the port set
 *      that applies to that peer; the destination port in that set: allow and
 *      record; otherwise deny.
 * Flow state is ours (not kernel conntrack): redirected packets never reach
 * netfilter. It is keyed from the endpoint's side, so a connection is one
 * entry whichever way its packets go. */
#ifndef VNET_LIB_POLICY_H
#define VNET_LIB_POLICY_H

#include "defs.h"
#include "maps.h"
#include "pkt.h"
#include "nat.h" /* is_stale, nat_timeout */

/* An established flow's last_seen is rewritten at most this often: fewer
 * writes to a line every CPU of a busy connection reads. Flow times are
 * bpf_ktime_get_coarse_ns() (CLOCK_MONOTONIC_COARSE, tick resolution): idle
 * timeouts are seconds, and the precise clock cost ~20 ns per check in a VM
 * (measured with BPF_PROG_TEST_RUN, a third of the established-path cost). */
#define VNET_POL_REFRESH_NS 1000000000ULL

enum pol_verdict {
	POL_FREE = 0,        /* no policy in this direction */
	POL_ESTABLISHED = 1, /* a flow this endpoint admitted */
	POL_RULE = 2,        /* a new flow, admitted by a rule */
	POL_DENY = 3,
	POL_RELATED_ICMP = 4, /* an ICMP error about a flow this endpoint admitted */
	POL_RELATED_FRAG = 5, /* a later fragment of a datagram this endpoint admitted */
};

/* Source and destination ports for policy: TCP/UDP/ICMP echo come from the
 * parser, SCTP is read here (the parser's has_l4 feeds NAT, which never
 * translates SCTP). Returns 0 if the packet carries no ports (later fragment,
 * IP options, other protocols, ICMP other than echo). */
static __always_inline int pol_ports(struct __sk_buff *skb, const struct vnet_pkt *p, __u16 *sport, __u16 *dport)
{
	__u16 ports[2];

	*sport = 0;
	*dport = 0;
	if (p->has_l4) {
		*sport = p->sport;
		*dport = p->dport;
		return 1;
	}
	if (p->proto != VNET_IPPROTO_SCTP || p->ihl != sizeof(struct iphdr) || (p->frag & IP_OFFSET) ||
	    p->tot_len < sizeof(struct iphdr) + 12 || bpf_skb_load_bytes(skb, p->l4_off, ports, sizeof(ports)) < 0)
		return 0;
	*sport = ports[0];
	*dport = ports[1];
	return 1;
}

/* Does policy `id` admit the peer `remote` on (proto, dport)? */
static __always_inline int pol_rules_allow(__u32 id, __u32 remote, __u8 proto, __u16 dport, int has_ports)
{
	struct vnet_pol_cidr_key ck = {};
	struct vnet_pol_port_key pk = {};
	struct vnet_pol_match *m;

	ck.prefixlen = 64 + 32;
	ck.id = id;
	ck.family = VNET_AF_INET;
	ck.addr[0] = remote;
	m = bpf_map_lookup_elem(&vnet_pol_cidrs, &ck);
	if (!m)
		return 0;
	if (m->flags & VNET_POL_M_ANY_PORT)
		return 1;
	if (!m->set || !has_ports || (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != VNET_IPPROTO_SCTP))
		return 0;
	pk.prefixlen = 64 + 16;
	pk.id = id;
	pk.set = m->set;
	pk.proto = proto;
	pk.port = dport;
	return bpf_map_lookup_elem(&vnet_pol_ports, &pk) != NULL;
}

/* The flow key, as `local` holds it, of the connection an ICMP error is
 * about (pkt_icmp_quote): the quoted packet was sent by `local` (the error's
 * destination) or to it; 0 if neither, or no such error. Like conntrack's
 * RELATED, any router on the path may send the error. */
static __always_inline int pol_icmp_error_flow(struct __sk_buff *skb, const struct vnet_pkt *p, __u32 local,
					       struct vnet_pol_flow_key *fk)
{
	struct vnet_quote q;
	int mine;

	if (!pkt_icmp_quote(skb, p, &q))
		return 0;
	if (q.saddr == local)
		mine = 1;
	else if (q.daddr == local)
		mine = 0;
	else
		return 0;
	__builtin_memset(fk, 0, sizeof(*fk));
	fk->family = VNET_AF_INET;
	fk->kind = VNET_POL_FLOW_CONN;
	fk->proto = q.proto;
	fk->local[0] = local;
	fk->remote[0] = mine ? q.daddr : q.saddr;
	if (q.proto == IPPROTO_ICMP) {
		fk->lport = q.sport; /* the echo id */
		return 1;
	}
	fk->lport = mine ? q.sport : q.dport;
	fk->rport = mine ? q.dport : q.sport;
	return 1;
}

/* The record that lets the later fragments of p's datagram through: keyed by
 * the IP id in place of ports (kind FRAG). */
static __always_inline void pol_frag_key(const struct vnet_pol_flow_key *conn, const struct vnet_pkt *p,
					 struct vnet_pol_flow_key *k)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->family = VNET_AF_INET;
	k->kind = VNET_POL_FLOW_FRAG;
	k->proto = p->proto;
	k->local[0] = conn->local[0];
	k->remote[0] = conn->remote[0];
	k->lport = p->ip_id;
}

/* Is a live record at k (with p's protocol timeout)? */
static __always_inline int pol_flow_live(const struct vnet_config *cfg, const struct vnet_pol_flow_key *k, __u64 now)
{
	struct vnet_flow_entry *e = bpf_map_lookup_elem(&vnet_pol_flows, k);

	return e && !is_stale(e->last_seen_ns, now, nat_timeout(cfg, k->proto));
}

static __always_inline int pol_check(struct __sk_buff *skb, const struct vnet_config *cfg, const struct vnet_pkt *p,
				     int dir)
{
	int egress = dir == VNET_POL_DIR_EGRESS;
	__u32 isolated = egress ? VNET_POL_F_EGRESS_ISOLATED : VNET_POL_F_INGRESS_ISOLATED;
	struct vnet_pol_ep_key ek = {};
	struct vnet_pol_flow_key fk = {}, rk;
	struct vnet_flow_entry *flow, fresh;
	struct vnet_pol_ep *ep;
	__u16 sport, dport;
	int has_ports, verdict;
	__u64 now;

	ek.family = VNET_AF_INET;
	ek.addr[0] = egress ? p->saddr : p->daddr;
	ep = bpf_map_lookup_elem(&vnet_pol_eps, &ek);
	if (!ep || !(ep->flags & (VNET_POL_F_INGRESS_ISOLATED | VNET_POL_F_EGRESS_ISOLATED)))
		return POL_FREE;

	has_ports = pol_ports(skb, p, &sport, &dport);
	fk.family = VNET_AF_INET;
	fk.proto = p->proto;
	fk.local[0] = ek.addr[0];
	fk.remote[0] = egress ? p->daddr : p->saddr;
	if (p->proto == IPPROTO_ICMP) {
		fk.lport = sport; /* the echo id, both ways */
	} else {
		fk.lport = egress ? sport : dport;
		fk.rport = egress ? dport : sport;
	}
	now = bpf_ktime_get_coarse_ns();
	fresh.last_seen_ns = now;
	flow = bpf_map_lookup_elem(&vnet_pol_flows, &fk);
	if (flow && !is_stale(flow->last_seen_ns, now, nat_timeout(cfg, p->proto))) {
		if (now > flow->last_seen_ns + VNET_POL_REFRESH_NS)
			flow->last_seen_ns = now;
		verdict = POL_ESTABLISHED;
	} else {
		verdict = POL_FREE;
		if (ep->flags & isolated) {
			if (!pol_rules_allow(egress ? ep->egress_id : ep->ingress_id, fk.remote[0], p->proto, dport, has_ports)) {
				/* What conntrack calls RELATED, looked at only when the rules said no. */
				if (p->frag & IP_OFFSET) {
					pol_frag_key(&fk, p, &rk);
					return pol_flow_live(cfg, &rk, now) ? POL_RELATED_FRAG : POL_DENY;
				}
				if (pol_icmp_error_flow(skb, p, fk.local[0], &rk) && pol_flow_live(cfg, &rk, now))
					return POL_RELATED_ICMP;
				return POL_DENY;
			}
			verdict = POL_RULE;
		}
		/* A later fragment belongs to its datagram, not to a connection of
		 * its own: a port-less record would admit every later fragment
		 * with that peer. */
		if (!(p->frag & IP_OFFSET))
			bpf_map_update_elem(&vnet_pol_flows, &fk, &fresh, BPF_ANY);
	}
	if (!(ep->flags & isolated))
		return POL_FREE;
	/* A first fragment admitted in an isolated direction: its datagram's
	 * later fragments (no ports) pass on its IP id. */
	if ((p->frag & (IP_MF | IP_OFFSET)) == IP_MF) {
		pol_frag_key(&fk, p, &rk);
		bpf_map_update_elem(&vnet_pol_flows, &rk, &fresh, BPF_ANY);
	}
	return verdict;
}

static __always_inline void pol_count(int verdict)
{
	if (verdict == POL_RULE)
		counter_inc(VNET_REASON_POLICY_ALLOW);
	else if (verdict == POL_ESTABLISHED)
		counter_inc(VNET_REASON_POLICY_ESTABLISHED);
	else if (verdict == POL_RELATED_ICMP)
		counter_inc(VNET_REASON_POLICY_RELATED_ICMP);
	else if (verdict == POL_RELATED_FRAG)
		counter_inc(VNET_REASON_POLICY_RELATED_FRAGMENT);
}

/* Drop, counted by reason and by endpoint + direction (metrics: drops by pod). */
static __always_inline int pol_drop(__u32 addr, int dir)
{
	struct vnet_pol_ep_key k = {};
	__u64 one = 1, *n;

	k.family = VNET_AF_INET;
	k.dir = dir;
	k.addr[0] = addr;
	n = bpf_map_lookup_elem(&vnet_pol_drops, &k);
	if (n)
		*n += 1; /* per-CPU slot */
	else if (bpf_map_update_elem(&vnet_pol_drops, &k, &one, BPF_NOEXIST) != 0) {
		n = bpf_map_lookup_elem(&vnet_pol_drops, &k);
		if (n)
			*n += 1;
	}
	return drop(dir == VNET_POL_DIR_EGRESS ? VNET_REASON_DROP_POLICY_EGRESS : VNET_REASON_DROP_POLICY_INGRESS);
}

/* Both checks of a packet between two endpoints (or one, when the source is
 * not local): TC_ACT_OK to go on, TC_ACT_SHOT if dropped (already counted). */
static __always_inline int pol_egress(struct __sk_buff *skb, const struct vnet_config *cfg, const struct vnet_pkt *p)
{
	int v = pol_check(skb, cfg, p, VNET_POL_DIR_EGRESS);

	if (v == POL_DENY)
		return pol_drop(p->saddr, VNET_POL_DIR_EGRESS);
	pol_count(v);
	return TC_ACT_OK;
}

static __always_inline int pol_ingress(struct __sk_buff *skb, const struct vnet_config *cfg, const struct vnet_pkt *p)
{
	int v = pol_check(skb, cfg, p, VNET_POL_DIR_INGRESS);

	if (v == POL_DENY)
		return pol_drop(p->daddr, VNET_POL_DIR_INGRESS);
	pol_count(v);
	return TC_ACT_OK;
}

#endif
