/* Forwarding without the stack: to a local pod (bpf_redirect_peer) or out of
 * the NIC (bpf_redirect / bpf_redirect_neigh after a FIB lookup). */
#ifndef VNET_LIB_FWD_H
#define VNET_LIB_FWD_H

#include "defs.h"
#include "maps.h"
#include "pkt.h"
#include "rewrite.h"
#include "nat.h"

/* Into the pod behind ep's host veth. tc ingress only (Linux >= 5.10). */
static __always_inline int fwd_to_endpoint(struct __sk_buff *skb, const struct vnet_pkt *p,
					   const struct vnet_endpoint *ep, enum vnet_reason reason)
{
	if (p->ttl <= 1)
		return pass(VNET_REASON_PASS_STACK); /* the stack sends time-exceeded */
	if (ipv4_dec_ttl(skb, p) < 0 || eth_set_macs(skb, ep->pod_mac, ep->host_mac) < 0)
		return drop(VNET_REASON_DROP_REWRITE);
	counter_inc(reason);
	return bpf_redirect_peer(ep->ifindex, 0);
}

/* Out of the NIC. The FIB decides: anything not routed out of the NIC
 * (a host address, another device, MTU trouble, no route) goes to the stack,
 * which knows how to answer. bpf_redirect_neigh(NULL) alone would also send
 * packets for the node's own addresses out of eth0. */
static __always_inline int fwd_to_nic(struct __sk_buff *skb, const struct vnet_pkt *p,
				      const struct vnet_config *cfg)
{
	struct bpf_fib_lookup fib = {};
	long rc;

	if (p->ttl <= 1)
		return pass(VNET_REASON_PASS_STACK);
	fib.family = AF_INET;
	fib.tos = p->tos;
	fib.l4_protocol = p->proto;
	fib.sport = p->sport;
	fib.dport = p->dport;
	fib.tot_len = 0; /* 0: the helper checks the skb against the MTU (GSO aware) */
	fib.ifindex = skb->ingress_ifindex;
	fib.ipv4_src = p->saddr;
	fib.ipv4_dst = p->daddr;
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if ((rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH) || fib.ifindex != cfg->nic_ifindex)
		return pass(VNET_REASON_PASS_STACK);
	if (ipv4_dec_ttl(skb, p) < 0)
		return drop(VNET_REASON_DROP_REWRITE);
	counter_inc(VNET_REASON_REDIRECT_NIC);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (eth_set_macs(skb, fib.dmac, fib.smac) < 0)
			return drop(VNET_REASON_DROP_REWRITE);
		return bpf_redirect(fib.ifindex, 0);
	}
	/* Neighbour not resolved yet: let the kernel resolve (and queue) it. */
	struct bpf_redir_neigh nh = { .nh_family = AF_INET, .ipv4_nh = fib.ipv4_dst };
	return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
}

#endif
