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

/* What the programs read of a kernel conntrack entry. */
struct vnet_ct_view {
	__u32 status;
	__be32 orig_saddr; /* the connection's initiator, before any NAT */
	__be16 orig_sport;
	__be16 reply_sport; /* the reply direction's source port... */
	__be32 reply_saddr; /* ...and address: the (post-DNAT) responder */
	__be32 reply_daddr; /* the reply direction's destination: post-SNAT initiator */
	__be16 reply_dport;
	__u16 pad;
};

/* Looks up the TCP/UDP tuple s -> d (proto) in kernel conntrack and copies
 * what `v` holds; 0 when it has no entry (or conntrack is unused in this
 * netns: the common, cheap case). A lookup matches either direction of a
 * connection. The entry is released before returning. */
static __always_inline int ct_v4_view(struct __sk_buff *skb, __u8 proto, __be32 saddr, __be32 daddr, __be16 sport,
				      __be16 dport, struct vnet_ct_view *v)
{
	struct bpf_sock_tuple tuple = {};
	struct bpf_ct_opts opts = {};
	struct nf_conn *ct;

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return 0;
	tuple.ipv4.saddr = saddr;
	tuple.ipv4.daddr = daddr;
	tuple.ipv4.sport = sport;
	tuple.ipv4.dport = dport;
	opts.netns_id = BPF_F_CURRENT_NETNS;
	opts.l4proto = proto;
	ct = bpf_skb_ct_lookup(skb, &tuple, sizeof(tuple.ipv4), &opts, sizeof(opts));
	if (!ct)
		return 0;
	v->status = ct->status;
	v->orig_saddr = ct->tuplehash[IP_CT_DIR_ORIGINAL].tuple.src.u3.ip;
	v->orig_sport = ct->tuplehash[IP_CT_DIR_ORIGINAL].tuple.src.u.all;
	v->reply_saddr = ct->tuplehash[IP_CT_DIR_REPLY].tuple.src.u3.ip;
	v->reply_sport = ct->tuplehash[IP_CT_DIR_REPLY].tuple.src.u.all;
	v->reply_daddr = ct->tuplehash[IP_CT_DIR_REPLY].tuple.dst.u3.ip;
	v->reply_dport = ct->tuplehash[IP_CT_DIR_REPLY].tuple.dst.u.all;
	bpf_ct_release(ct);
	return 1;
}

/* The status bits kernel conntrack holds for the TCP/UDP tuple s -> d, or 0
 * when it has no entry. With `initiator` set, only a connection that s -> d
 * itself opened counts. */
static __always_inline __u32 ct_v4_status(struct __sk_buff *skb, const struct vnet_pkt *p, __be32 saddr, __be32 daddr,
					  __be16 sport, __be16 dport, int initiator)
{
	struct vnet_ct_view v = {};

	if (!p->has_l4 || !ct_v4_view(skb, p->proto, saddr, daddr, sport, dport, &v))
		return 0;
	if (initiator && (v.orig_saddr != saddr || v.orig_sport != sport))
		return 0;
	return v.status;
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

/* For p travelling the *original* direction of a connection netfilter
 * SNATed (kube-proxy's MASQUERADE of NodePort/hairpin traffic, ip-masq-agent,
 * portmap's hairpin SNAT): the connection's source before the SNAT, which is
 * what policy must judge (the iptables dataplane filters in FORWARD, before
 * POSTROUTING's SNAT, and sees it). p's reversed tuple is the connection's
 * reply tuple exactly; a reply-direction packet of a SNATed connection does
 * not match (its reversed tuple is the original one). 1 if found. */
static __always_inline int ct_v4_snat_origin(struct __sk_buff *skb, const struct vnet_pkt *p, __be32 *saddr,
					     __be16 *sport)
{
	struct vnet_ct_view v = {};

	if (!p->has_l4 || !ct_v4_view(skb, p->proto, p->daddr, p->saddr, p->dport, p->sport, &v))
		return 0;
	if (!(v.status & IPS_SRC_NAT) || v.reply_saddr != p->daddr || v.reply_sport != p->dport ||
	    v.reply_daddr != p->saddr || v.reply_dport != p->sport)
		return 0;
	*saddr = v.orig_saddr;
	*sport = v.orig_sport;
	return 1;
}

/* True if p is an ICMP error about a connection netfilter NATed (kube-proxy):
 * like the connection's own packets it must go through the stack, which
 * translates the quote along with the error; delivered as is, the quote
 * names an address the receiving socket never used and the error is lost. */
static __always_inline int ct_v4_icmp_error_natted(struct __sk_buff *skb, const struct vnet_pkt *p)
{
	struct vnet_ct_view v = {};
	struct vnet_quote q;

	/* The quote is a packet as it left the NAT: its reverse is the tuple
	 * conntrack holds for the other direction. */
	return pkt_icmp_quote(skb, p, &q) && ct_v4_view(skb, q.proto, q.daddr, q.saddr, q.dport, q.sport, &v) &&
	       (v.status & (IPS_SRC_NAT | IPS_DST_NAT));
}

#endif
