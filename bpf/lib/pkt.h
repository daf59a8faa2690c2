/* IPv4 parsing into a copy. Every header read goes through
 * bpf_skb_load_bytes, which bounds-checks against the skb (linear or not), so
 * truncated packets fail here and nothing later touches packet memory
 * directly. Rewrites are offset-based (lib/rewrite.h) for the same reason:
 * helpers that change the packet invalidate direct packet pointers. */
#ifndef VNET_LIB_PKT_H
#define VNET_LIB_PKT_H

#include "defs.h"
#include "maps.h"

struct vnet_pkt {
	__u32 saddr; /* network order */
	__u32 daddr;
	__u16 tot_len; /* host order */
	__u16 frag;    /* host order frag_off: flags + offset */
	__u8 ihl;      /* header length in bytes */
	__u8 ttl;
	__u8 tos;
	__u8 proto;
	__u16 sport; /* network order; ICMP echo: the identifier */
	__u16 dport; /* network order; ICMP echo: 0 */
	__u8 has_l4; /* ports parsed: TCP, UDP, ICMP echo/echo-reply; no options; not a later fragment */
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 pad;
	__u32 l4_off;
	__u16 ip_id; /* network order */
	__u16 pad2;
};

enum {
	PARSE_OK = 0,
	PARSE_NOT_IPV4 = 1,
	PARSE_MALFORMED = 2, /* saddr/daddr are valid if the fixed IP header could be read */
};

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

static __always_inline int pkt_parse(struct __sk_buff *skb, struct vnet_pkt *p)
{
	struct ethhdr eth;
	struct iphdr ip;

	__builtin_memset(p, 0, sizeof(*p));
	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0)
		return PARSE_NOT_IPV4;
	if (eth.h_proto != bpf_htons(ETH_P_IP))
		return PARSE_NOT_IPV4;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return PARSE_MALFORMED;
	p->saddr = ip.saddr;
	p->daddr = ip.daddr;
	if (ip.version != 4 || ip.ihl < 5)
		return PARSE_MALFORMED;
	p->ihl = ip.ihl * 4;
	p->tot_len = bpf_ntohs(ip.tot_len);
	/* tot_len may be shorter than the frame (Ethernet padding), never longer. */
	if (p->tot_len < p->ihl || (__u32)p->tot_len + ETH_HLEN > skb->len)
		return PARSE_MALFORMED;
	p->ttl = ip.ttl;
	p->tos = ip.tos;
	p->proto = ip.protocol;
	p->frag = bpf_ntohs(ip.frag_off);
	p->ip_id = ip.id;
	p->l4_off = ETH_HLEN + p->ihl;

	/* Options shift L4 and later fragments carry no L4 header: callers
	 * treat both as "no ports" and never translate them. */
	if (p->ihl != sizeof(struct iphdr) || (p->frag & IP_OFFSET))
		return PARSE_OK;

	if (p->proto == IPPROTO_TCP) {
		struct tcphdr th;
		if (p->tot_len < sizeof(ip) + sizeof(th) ||
		    bpf_skb_load_bytes(skb, ETH_HLEN + sizeof(ip), &th, sizeof(th)) < 0)
			return PARSE_MALFORMED;
		if (th.doff < 5)
			return PARSE_MALFORMED;
		p->sport = th.source;
		p->dport = th.dest;
		p->tcp_flags = ((__u8 *)&th)[13];
		p->has_l4 = 1;
	} else if (p->proto == IPPROTO_UDP) {
		struct udphdr uh;
		if (p->tot_len < sizeof(ip) + sizeof(uh) ||
		    bpf_skb_load_bytes(skb, ETH_HLEN + sizeof(ip), &uh, sizeof(uh)) < 0)
			return PARSE_MALFORMED;
		p->sport = uh.source;
		p->dport = uh.dest;
		p->has_l4 = 1;
	} else if (p->proto == IPPROTO_ICMP) {
		struct icmphdr ih;
		if (p->tot_len < sizeof(ip) + 8 ||
		    bpf_skb_load_bytes(skb, ETH_HLEN + sizeof(ip), &ih, 8) < 0)
			return PARSE_MALFORMED;
		p->icmp_type = ih.type;
		if (ih.type == ICMP_ECHO || ih.type == ICMP_ECHOREPLY) {
			p->sport = ih.un.echo.id;
			p->dport = 0;
			p->has_l4 = 1;
		}
	}
	return PARSE_OK;
}

#define VNET_ICMP_DEST_UNREACH 3
#define VNET_ICMP_TIME_EXCEEDED 11
#define VNET_ICMP_PARAMETERPROB 12
#define VNET_IPPROTO_SCTP 132

/* The packet an ICMP error is about, as quoted (its sender's view). ICMP
 * echo: sport = the echo id, dport = 0. */
struct vnet_quote {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* An ICMP error (destination unreachable, e.g. "fragmentation needed"; time
 * exceeded; parameter problem) carries the IP header and the first 8 bytes
 * of the packet it is about. 1 and the quote's tuple if p is such an error
 * (no IP options, not a later fragment) and the quote, within the datagram,
 * is IPv4 (its options skipped; not a later fragment) with TCP/UDP/SCTP ports
 * or an ICMP echo id; else 0. */
static __always_inline int pkt_icmp_quote(struct __sk_buff *skb, const struct vnet_pkt *p, struct vnet_quote *q)
{
	struct iphdr in;
	__u16 l4[4]; /* TCP/UDP/SCTP: sport, dport; ICMP: type+code, csum, id, seq */
	__u32 off = ETH_HLEN + sizeof(struct iphdr) + 8;

	if (p->proto != IPPROTO_ICMP || p->ihl != sizeof(struct iphdr) || (p->frag & IP_OFFSET) ||
	    (p->icmp_type != VNET_ICMP_DEST_UNREACH && p->icmp_type != VNET_ICMP_TIME_EXCEEDED &&
	     p->icmp_type != VNET_ICMP_PARAMETERPROB))
		return 0;
	if (bpf_skb_load_bytes(skb, off, &in, sizeof(in)) < 0 || in.version != 4 || in.ihl < 5 ||
	    (bpf_ntohs(in.frag_off) & IP_OFFSET))
		return 0;
	off += in.ihl * 4;
	if (off + sizeof(l4) > ETH_HLEN + (__u32)p->tot_len || bpf_skb_load_bytes(skb, off, l4, sizeof(l4)) < 0)
		return 0;
	__builtin_memset(q, 0, sizeof(*q));
	q->saddr = in.saddr;
	q->daddr = in.daddr;
	q->proto = in.protocol;
	if (in.protocol == IPPROTO_ICMP) {
		__u8 type = ((__u8 *)l4)[0];

		if (type != ICMP_ECHO && type != ICMP_ECHOREPLY)
			return 0;
		q->sport = l4[2];
		return 1;
	}
	if (in.protocol != IPPROTO_TCP && in.protocol != IPPROTO_UDP && in.protocol != VNET_IPPROTO_SCTP)
		return 0;
	q->sport = l4[0];
	q->dport = l4[1];
	return 1;
}

static __always_inline int pkt_is_fragment(const struct vnet_pkt *p)
{
	return (p->frag & (IP_MF | IP_OFFSET)) != 0;
}

/* The egress-oriented tuple of a packet leaving a pod. */
static __always_inline void pkt_egress_tuple(const struct vnet_pkt *p, struct vnet_nat_tuple *t)
{
	__builtin_memset(t, 0, sizeof(*t));
	t->saddr = p->saddr;
	t->daddr = p->daddr;
	t->sport = p->sport;
	t->dport = p->dport;
	t->proto = p->proto;
}

/* The egress-oriented tuple of a packet arriving for a pod (or for the NAT address). */
static __always_inline void pkt_ingress_tuple(const struct vnet_pkt *p, struct vnet_nat_tuple *t)
{
	__builtin_memset(t, 0, sizeof(*t));
	t->saddr = p->daddr;
	t->daddr = p->saddr;
	t->proto = p->proto;
	if (p->proto == IPPROTO_ICMP) {
		t->sport = p->sport; /* the echo id */
	} else {
		t->sport = p->dport;
		t->dport = p->sport;
	}
}

static __always_inline int ipv4_is_multicast_or_broadcast(__u32 addr)
{
	return (bpf_ntohl(addr) & 0xf0000000) == 0xe0000000 || addr == 0xffffffff;
}

#endif
