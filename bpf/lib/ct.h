/* Kernel conntrack lookups (kfuncs, Linux >= 6.0 with CONFIG_NF_CONNTRACK).
 * Used only to decide "does the stack own this flow?": a connection that
 * netfilter NAT touched (kube-proxy's ClusterIP/NodePort DNAT, masquerade)
 * must keep going through the stack in both directions, or its replies
 * would skip the un-NAT and reach the client from the wrong address. */
#ifndef VNET_LIB_CT_H
#define VNET_LIB_CT_H

#include "defs.h"
#include "pkt.h"

extern struct nf_conn *bpf_skb_ct_lookup(struct __sk_buff *skb, struct bpf_sock_tuple *tuple, __u32 tuple_sz,
					 struct bpf_ct_opts *opts, __u32 opts_sz) __ksym;
extern void bpf_ct_release(struct nf_conn *ct) __ksym;

/* The status bits kernel conntrack holds for the TCP/UDP tuple s -> d, or 0
 * when it has no entry (or conntrack is unused in this netns: the common,
 * cheap case). A lookup matches either direction of a connection; with
 * `initiator` set, only a connection that s -> d itself opened counts. The
 * entry is released before returning. */
static __always_inline __u32 ct_v4_status(struct __sk_buff *skb, const struct vnet_pkt *p, __be32 saddr, __be32 daddr,
					  __be16 sport, __be16 dport, int initiator)
{
	struct bpf_sock_tuple tuple = {};
	struct bpf_ct_opts opts = {};
	struct nf_conn *ct;
	__u32 status;

	if (!p->has_l4 || (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP))
		return 0;
	tuple.ipv4.saddr = saddr;
	tuple.ipv4.daddr = daddr;
	tuple.ipv4.sport = sport;
	tuple.ipv4.dport = dport;
	opts.netns_id = BPF_F_CURRENT_NETNS;
	opts.l4proto = p->proto;
	ct = bpf_skb_ct_lookup(skb, &tuple, sizeof(tuple.ipv4), &opts, sizeof(opts));
	if (!ct)
		return 0;
	status = ct->status;
	if (initiator && (ct->tuplehash[IP_CT_DIR_ORIGINAL].tuple.src.u3.ip != saddr ||
			  ct->tuplehash[IP_CT_DIR_ORIGINAL].tuple.src.u.all != sport))
		status = 0;
	bpf_ct_release(ct);
	return status;
}

/* True if kernel conntrack holds this TCP/UDP flow (either direction) with
 * NAT applied. */
static __always_inline int ct_v4_is_natted(struct __sk_buff *skb, const struct vnet_pkt *p)
{
	return (ct_v4_status(skb, p, p->saddr, p->daddr, p->sport, p->dport, 0) & (IPS_SRC_NAT | IPS_DST_NAT)) != 0;
}

/* True if p travels the reply direction of a connection netfilter DNATed:
 * kernel conntrack has the reversed tuple (the connection as its initiator,
 * p's destination, sent it, e.g. to a ClusterIP) with DST_NAT. The stack
 * un-DNATed p, so its source is the service address, which no flow record
 * of ours knows (they hold the backend). p's destination must be the
 * connection's initiator: a client's new connection DNATed *to* this pod also
 * matches the reversed tuple (as its reply direction), and must not pass. */
static __always_inline int ct_v4_is_dnat_reply(struct __sk_buff *skb, const struct vnet_pkt *p)
{
	return (ct_v4_status(skb, p, p->daddr, p->saddr, p->dport, p->sport, 1) & IPS_DST_NAT) != 0;
}

#endif
