// SPDX-License-Identifier: GPL-2.0
/* The ebpf dataplane's four tc programs (docs/ebpf.md has the packet walk):
 *   from_pod  tc ingress, every host-side pod veth
 *   to_pod    tc egress, every host-side pod veth: policy for what the stack delivers
 *   to_nic    tc egress, eth0: SNAT pods -> outside the VNet
 *   from_nic  tc ingress, eth0: reverse SNAT, deliver to pods
 * NetworkPolicy (lib/policy.h) is checked wherever a packet leaves a pod for
 * good or is handed to one: from_pod's local redirect (both pods), to_nic (the
 * sender), from_nic's redirect (the receiver), to_pod (both, post-stack). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lib/defs.h"
#include "lib/maps.h"
#include "lib/pkt.h"
#include "lib/rewrite.h"
#include "lib/ct.h"
#include "lib/nat.h"
#include "lib/fwd.h"
#include "lib/policy.h"

char LICENSE[] SEC("license") = "GPL";

SEC("tc")
int from_pod(struct __sk_buff *skb)
{
	const struct vnet_config *cfg = config_get();
	struct vnet_endpoint *src_ep, *dst_ep;
	struct vnet_pkt p;
	__u32 cidr;
	int rc;

	if (!cfg)
		return pass(VNET_REASON_PASS_NOT_READY);
	rc = pkt_parse(skb, &p);
	if (rc == PARSE_NOT_IPV4)
		return TC_ACT_OK; /* ARP (answered by proxy_arp), IPv6: the stack's business */
	if (rc == PARSE_MALFORMED)
		return drop(VNET_REASON_DROP_MALFORMED);

	/* Anti-spoofing: the fabric would drop it anyway, but only after it
	 * left with the node's MAC. */
	src_ep = endpoint_lookup(p.saddr);
	if (!src_ep || src_ep->ifindex != skb->ingress_ifindex)
		return drop(VNET_REASON_DROP_SPOOFED);

	if (p.ihl != sizeof(struct iphdr))
		return pass(VNET_REASON_PASS_IP_OPTIONS);
	/* Fragments go to the stack: only the first carries ports, so the
	 * conntrack check below cannot see the others. */
	if (pkt_is_fragment(&p))
		return pass(VNET_REASON_PASS_FRAGMENT);
	if (p.ttl <= 1 || ipv4_is_multicast_or_broadcast(p.daddr))
		return pass(VNET_REASON_PASS_STACK);
	if ((cfg->flags & VNET_CFG_F_CT_CHECK) && (ct_v4_is_natted(skb, &p) || ct_v4_icmp_error_natted(skb, &p)))
		return pass(VNET_REASON_PASS_CT_NAT);

	dst_ep = endpoint_lookup(p.daddr);
	if (dst_ep) {
		if (pol_egress(skb, cfg, &p) != TC_ACT_OK || pol_ingress(skb, cfg, &p) != TC_ACT_OK)
			return TC_ACT_SHOT;
		return fwd_to_endpoint(skb, &p, dst_ep, VNET_REASON_FWD_LOCAL);
	}

	cidr = cidr_flags(p.daddr);
	if (cidr & VNET_CIDR_F_STACK)
		return pass(VNET_REASON_PASS_STACK);
	/* Outside the VNet: by default the stack routes it (kube-proxy may have
	 * to DNAT a ClusterIP we cannot recognise); to_nic SNATs it on eth0
	 * either way. Replies of inbound flows took the fast path in, so they
	 * take it out too (conntrack would see half a connection otherwise). */
	if (!(cidr & VNET_CIDR_F_NOSNAT) && !(cfg->flags & VNET_CFG_F_FASTPATH_EXTERNAL) &&
	    !inbound_is_reply(cfg, &p, bpf_ktime_get_ns()))
		return pass(VNET_REASON_PASS_STACK);
	return fwd_to_nic(skb, &p, cfg);
}

/* p travels the original direction of a connection the stack SNATed from a
 * local pod: p (a copy) gets the pod's address and port back, for policy.
 * Counted policy-masq-origin. */
static __always_inline int snat_origin_pod(struct __sk_buff *skb, struct vnet_pkt *p)
{
	__be32 saddr;
	__be16 sport;

	if (!ct_v4_snat_origin(skb, p, &saddr, &sport) || !endpoint_lookup(saddr))
		return 0;
	p->saddr = saddr;
	p->sport = sport;
	counter_inc(VNET_REASON_POLICY_MASQ_ORIGIN);
	return 1;
}

SEC("tc")
int to_nic(struct __sk_buff *skb)
{
	const struct vnet_config *cfg = config_get();
	struct vnet_nat_entry *fwd;
	struct vnet_nat_tuple key;
	struct vnet_pkt p;
	__u16 nat_port;
	__u64 now;
	int rc, restarted, err;

	if (!cfg)
		return pass(VNET_REASON_PASS_NOT_READY);
	rc = pkt_parse(skb, &p);
	if (rc == PARSE_NOT_IPV4)
		return TC_ACT_OK;
	if (!endpoint_lookup(p.saddr)) {
		/* The node's own traffic, or a pod's that the stack masqueraded on
		 * its way out (ip-masq-agent, kube-proxy's MASQUERADE of hairpin
		 * and NodePort traffic to a backend elsewhere): that still owes its
		 * pod's egress policy, judged with the pod's own address. */
		if (rc == PARSE_OK && p.saddr == cfg->primary_ip && (cfg->flags & VNET_CFG_F_CT_CHECK) &&
		    snat_origin_pod(skb, &p))
			return pol_egress(skb, cfg, &p);
		return TC_ACT_OK;
	}
	if (rc == PARSE_MALFORMED)
		return drop(VNET_REASON_DROP_MALFORMED);
	/* Every pod packet leaving the node passes here, redirected by from_pod
	 * or routed by the stack (after any kube-proxy DNAT: the real peer). */
	if (pol_egress(skb, cfg, &p) != TC_ACT_OK)
		return TC_ACT_SHOT;
	if (cidr_flags(p.daddr) & VNET_CIDR_F_NOSNAT)
		return TC_ACT_OK;
	/* Below: a pod talking outside the VNet. Anything we cannot translate
	 * leaves untouched; the fabric drops it unless it is a reply via the
	 * pod's public IP, which is exactly right. */
	if (p.ihl != sizeof(struct iphdr))
		return pass(VNET_REASON_PASS_IP_OPTIONS);
	if (p.frag & IP_OFFSET)
		return pass(VNET_REASON_PASS_FRAGMENT);
	if (!p.has_l4 || (p.proto == IPPROTO_ICMP && p.icmp_type != ICMP_ECHO))
		return pass(VNET_REASON_PASS_UNTRACKED);

	now = bpf_ktime_get_ns();
	if (inbound_is_reply(cfg, &p, now))
		return pass(VNET_REASON_PASS_INBOUND_REPLY);
	/* A first fragment we would translate while the rest of the datagram
	 * kept the pod's address: drop it rather than send half a rewrite. */
	if (p.frag & IP_MF)
		return drop(VNET_REASON_DROP_FRAG_NEEDS_NAT);

	pkt_egress_tuple(&p, &key);
	fwd = snat_v4_lookup(cfg, &key, &p, now, &restarted);
	if (fwd) {
		if (rewrite_v4_nat(skb, &p, 1, fwd->addr, fwd->port) < 0)
			return drop(VNET_REASON_DROP_REWRITE);
		return pass(restarted ? VNET_REASON_SNAT_NEW : VNET_REASON_SNAT_HIT);
	}
	if (!snat_may_create(&p))
		return pass(VNET_REASON_PASS_UNTRACKED);
	err = snat_v4_new(cfg, &key, now, &nat_port);
	if (err == VNET_NAT_MAP_FULL)
		return drop(VNET_REASON_DROP_NAT_MAP_FULL);
	if (err < 0)
		return drop(VNET_REASON_DROP_NAT_NO_PORT);
	if (rewrite_v4_nat(skb, &p, 1, cfg->primary_ip, nat_port) < 0)
		return drop(VNET_REASON_DROP_REWRITE);
	return pass(VNET_REASON_SNAT_NEW);
}

/* Replies to SNATed flows: dst is the primary IP and a reverse entry matches. */
static __always_inline int rev_snat(struct __sk_buff *skb, const struct vnet_pkt *p, const struct vnet_config *cfg)
{
	struct vnet_nat_entry *rev, *fwd;
	struct vnet_endpoint *ep;
	struct vnet_nat_tuple rkey, fkey;
	struct vnet_pkt rewritten;
	__u64 now;
	__u16 bits;

	if (!p->has_l4 || pkt_is_fragment(p) || (p->proto == IPPROTO_ICMP && p->icmp_type != ICMP_ECHOREPLY))
		return TC_ACT_OK; /* the node's own traffic */
	pkt_ingress_tuple(p, &rkey);
	rev = bpf_map_lookup_elem(&vnet_snat_rev, &rkey);
	if (!rev)
		return TC_ACT_OK;
	now = bpf_ktime_get_ns();
	nat_fwd_key(&fkey, rev, &rkey);
	if (is_stale(rev->last_seen_ns, now, nat_pair_timeout(cfg, p->proto, rev->flags))) {
		fwd = bpf_map_lookup_elem(&vnet_snat_fwd, &fkey);
		if (!fwd || fwd->port != rkey.sport ||
		    is_stale(fwd->last_seen_ns, now, nat_pair_timeout(cfg, p->proto, rev->flags | fwd->flags))) {
			if (fwd && fwd->port == rkey.sport)
				bpf_map_delete_elem(&vnet_snat_fwd, &fkey);
			bpf_map_delete_elem(&vnet_snat_rev, &rkey);
			return TC_ACT_OK;
		}
	}
	rev->last_seen_ns = now;
	bits = nat_close_bits(p, VNET_NAT_F_FIN_IN);
	if (bits) {
		nat_mark(rev, bits);
		fwd = bpf_map_lookup_elem(&vnet_snat_fwd, &fkey);
		if (fwd && fwd->port == rkey.sport)
			nat_mark(fwd, bits);
	}
	if (rewrite_v4_nat(skb, p, 0, rev->addr, rev->port) < 0)
		return drop(VNET_REASON_DROP_REWRITE);
	counter_inc(VNET_REASON_REV_SNAT);

	ep = endpoint_lookup(rev->addr);
	if (!ep)
		return drop(VNET_REASON_DROP_NO_ENDPOINT);
	/* Outbound went through the stack unless fast-path-external is on;
	 * keep both directions on the same path (see from_pod). */
	if (!(cfg->flags & VNET_CFG_F_FASTPATH_EXTERNAL))
		return TC_ACT_OK;
	rewritten = *p;
	rewritten.daddr = rev->addr;
	if (p->proto == IPPROTO_ICMP)
		rewritten.sport = rev->port; /* the echo id */
	else
		rewritten.dport = rev->port;
	if (pol_ingress(skb, cfg, &rewritten) != TC_ACT_OK)
		return TC_ACT_SHOT;
	return fwd_to_endpoint(skb, &rewritten, ep, VNET_REASON_FWD_FROM_NIC);
}

SEC("tc")
int from_nic(struct __sk_buff *skb)
{
	const struct vnet_config *cfg = config_get();
	struct vnet_endpoint *ep;
	struct vnet_pkt p;
	int rc;

	if (!cfg)
		return pass(VNET_REASON_PASS_NOT_READY);
	if (skb->pkt_type != PACKET_HOST)
		return TC_ACT_OK;
	rc = pkt_parse(skb, &p);
	if (rc != PARSE_OK)
		return TC_ACT_OK; /* not ours to judge: the stack validates host traffic */
	if (p.daddr == cfg->primary_ip)
		return rev_snat(skb, &p, cfg);

	ep = endpoint_lookup(p.daddr);
	if (!ep)
		return TC_ACT_OK;
	if (p.ihl != sizeof(struct iphdr))
		return pass(VNET_REASON_PASS_IP_OPTIONS);
	if (pkt_is_fragment(&p))
		return pass(VNET_REASON_PASS_FRAGMENT);
	if ((cfg->flags & VNET_CFG_F_CT_CHECK) && (ct_v4_is_natted(skb, &p) || ct_v4_icmp_error_natted(skb, &p)))
		return pass(VNET_REASON_PASS_CT_NAT);
	if (pol_ingress(skb, cfg, &p) != TC_ACT_OK)
		return TC_ACT_SHOT;
	if (p.has_l4 && (p.proto == IPPROTO_TCP || p.proto == IPPROTO_UDP) &&
	    !(cidr_flags(p.saddr) & VNET_CIDR_F_NOSNAT))
		inbound_record(&p, bpf_ktime_get_ns());
	return fwd_to_endpoint(skb, &p, ep, VNET_REASON_FWD_FROM_NIC);
}

/* The node itself: its primary IP or loopback (a localhost NodePort). */
static __always_inline int is_node_addr(const struct vnet_config *cfg, __u32 addr)
{
	return addr == cfg->primary_ip || (bpf_ntohl(addr) >> 24) == 127;
}

/* An ICMP error about a connection the pod opened to a service (e.g. port
 * unreachable from the backend): the stack un-NATed the quote along with the
 * error, so it names the service address, which no flow record of ours
 * holds (they hold the backend). Kernel conntrack knows the connection: the
 * pod opened it and netfilter DNATed it. */
static __always_inline int icmp_error_of_dnat_conn(struct __sk_buff *skb, const struct vnet_pkt *p)
{
	struct vnet_ct_view v = {};
	struct vnet_quote q;

	if (!pkt_icmp_quote(skb, p, &q) || q.saddr != p->daddr ||
	    !ct_v4_view(skb, q.proto, q.saddr, q.daddr, q.sport, q.dport, &v))
		return 0;
	return (v.status & IPS_DST_NAT) && v.orig_saddr == q.saddr && v.orig_sport == q.sport;
}

/* What the kernel stack delivers to a pod (tc egress of its host veth): the
 * node's own traffic, and whatever from_pod/from_nic handed to the stack
 * (kube-proxy flows, fragments, IP options, non-fast-path replies). Packets
 * from_pod or from_nic redirected into the pod never pass here. */
SEC("tc")
int to_pod(struct __sk_buff *skb)
{
	const struct vnet_config *cfg = config_get();
	struct vnet_pkt p, q;
	__be32 osaddr;
	__be16 osport;
	int rc, v;

	if (!cfg)
		return TC_ACT_OK;
	rc = pkt_parse(skb, &p);
	if (rc == PARSE_NOT_IPV4)
		return TC_ACT_OK;
	if (rc == PARSE_MALFORMED)
		return drop(VNET_REASON_DROP_MALFORMED); /* the stack checked the IP header: a bad L4 */
	if (endpoint_lookup(p.saddr)) {
		if (pol_egress(skb, cfg, &p) != TC_ACT_OK)
			return TC_ACT_SHOT;
	} else if ((cfg->flags & VNET_CFG_F_CT_CHECK) && ct_v4_snat_origin(skb, &p, &osaddr, &osport) &&
		   !is_node_addr(cfg, osaddr)) {
		/* The stack masqueraded it, typically to the node's IP (NodePort
		 * with externalTrafficPolicy=Cluster, hairpin): judge the source it
		 * had, as the iptables dataplane does in FORWARD (before SNAT).
		 * That source is no node, so no exception below applies. */
		counter_inc(VNET_REASON_POLICY_MASQ_ORIGIN);
		q = p;
		q.saddr = osaddr;
		q.sport = osport;
		if (endpoint_lookup(q.saddr) && pol_egress(skb, cfg, &q) != TC_ACT_OK)
			return TC_ACT_SHOT;
		return pol_ingress(skb, cfg, &q);
	}
	v = pol_check(skb, cfg, &p, VNET_POL_DIR_INGRESS);
	if (v != POL_DENY) {
		pol_count(v);
		return TC_ACT_OK;
	}
	/* Exceptions NetworkPolicy requires, looked at only when the rules said no. */
	if (p.saddr == cfg->primary_ip)
		return pass(VNET_REASON_POLICY_ALLOW_HOST); /* the node itself: kubelet probes */
	if ((cfg->flags & VNET_CFG_F_CT_CHECK) && ct_v4_is_dnat_reply(skb, &p))
		return pass(VNET_REASON_POLICY_ALLOW_SERVICE_REPLY);
	if ((cfg->flags & VNET_CFG_F_CT_CHECK) && icmp_error_of_dnat_conn(skb, &p))
		return pass(VNET_REASON_POLICY_RELATED_ICMP);
	return pol_drop(p.daddr, VNET_POL_DIR_INGRESS);
}
