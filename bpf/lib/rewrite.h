/* Header rewrites with checksum fixups, all by offset (see lib/pkt.h). Every
 * change to a checksummed field is paired with a change to the checksum in
 * the same span, so the one's-complement sum of the packet is unchanged and
 * skb->csum (CHECKSUM_COMPLETE on ingress) stays valid. */
#ifndef VNET_LIB_REWRITE_H
#define VNET_LIB_REWRITE_H

#include "defs.h"
#include "pkt.h"

/* Offset of the L4 checksum and the csum helper flags for its protocol. */
static __always_inline int l4_csum_loc(const struct vnet_pkt *p, __u32 *off, __u64 *flags)
{
	switch (p->proto) {
	case IPPROTO_TCP:
		*off = p->l4_off + __builtin_offsetof(struct tcphdr, check);
		*flags = 0;
		return 0;
	case IPPROTO_UDP:
		/* A zero UDP checksum means "none": MARK_MANGLED_0 leaves it
		 * alone and writes 0xffff if an update would yield 0. */
		*off = p->l4_off + __builtin_offsetof(struct udphdr, check);
		*flags = BPF_F_MARK_MANGLED_0;
		return 0;
	case IPPROTO_ICMP:
		*off = p->l4_off + __builtin_offsetof(struct icmphdr, checksum);
		*flags = 0;
		return 0;
	}
	return -1;
}

/* Offset of the port (TCP/UDP) or echo id (ICMP) on one side. */
static __always_inline __u32 l4_port_off(const struct vnet_pkt *p, int src)
{
	if (p->proto == IPPROTO_ICMP)
		return p->l4_off + 4; /* icmphdr.un.echo.id */
	return p->l4_off + (src ? 0 : 2);
}

/* Replace the source (src=1) or destination address and port of a packet
 * with has_l4 set. ICMP carries no pseudo header, so only the id changes its
 * checksum. Returns <0 if a helper failed (packet may be half-written:
 * the caller drops it). */
static __always_inline int rewrite_v4_nat(struct __sk_buff *skb, const struct vnet_pkt *p, int src,
					  __u32 new_addr, __u16 new_port)
{
	__u32 old_addr = src ? p->saddr : p->daddr;
	__u16 old_port = src ? p->sport : p->dport;
	__u32 addr_off = src ? IP_SRC_OFF : IP_DST_OFF;
	__u32 csum_off;
	__u64 csum_flags;

	if (p->proto == IPPROTO_ICMP)
		old_port = p->sport; /* the id, in both directions */
	if (l4_csum_loc(p, &csum_off, &csum_flags) < 0)
		return -1;
	if (old_addr != new_addr) {
		if (p->proto != IPPROTO_ICMP &&
		    bpf_l4_csum_replace(skb, csum_off, old_addr, new_addr, csum_flags | BPF_F_PSEUDO_HDR | 4) < 0)
			return -1;
		if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_addr, new_addr, 4) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, addr_off, &new_addr, 4, 0) < 0)
			return -1;
	}
	if (old_port != new_port) {
		if (bpf_l4_csum_replace(skb, csum_off, old_port, new_port, csum_flags | 2) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, l4_port_off(p, src), &new_port, 2, 0) < 0)
			return -1;
	}
	return 0;
}

/* Forwarding is a router hop: decrement TTL as ip_forward() would. Callers
 * hand ttl <= 1 to the stack so it can send ICMP time exceeded. */
static __always_inline int ipv4_dec_ttl(struct __sk_buff *skb, const struct vnet_pkt *p)
{
	__u8 ttl = p->ttl - 1;
	/* The checksum covers 16-bit words: ttl shares one with protocol. */
	__u16 old_word = bpf_htons(((__u16)p->ttl << 8) | p->proto);
	__u16 new_word = bpf_htons(((__u16)ttl << 8) | p->proto);

	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_word, new_word, 2) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, IP_TTL_OFF, &ttl, 1, 0);
}

static __always_inline int eth_set_macs(struct __sk_buff *skb, const __u8 *dst, const __u8 *src)
{
	__u8 macs[2 * ETH_ALEN];

	__builtin_memcpy(macs, dst, ETH_ALEN);
	__builtin_memcpy(macs + ETH_ALEN, src, ETH_ALEN);
	return bpf_skb_store_bytes(skb, 0, macs, sizeof(macs), 0);
}

#endif
