// SPDX-License-Identifier: GPL-2.0
/* probeKernel(): loads only if the conntrack kfuncs exist for tc programs. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "lib/defs.h"

char LICENSE[] SEC("license") = "GPL";

extern struct nf_conn *bpf_skb_ct_lookup(struct __sk_buff *skb, struct bpf_sock_tuple *tuple, __u32 tuple_sz,
					 struct bpf_ct_opts *opts, __u32 opts_sz) __ksym;
extern void bpf_ct_release(struct nf_conn *ct) __ksym;

SEC("tc")
int probe_ct(struct __sk_buff *skb)
{
	struct bpf_sock_tuple tuple = {};
	struct bpf_ct_opts opts = { .netns_id = -1, .l4proto = IPPROTO_TCP };
	struct nf_conn *ct = bpf_skb_ct_lookup(skb, &tuple, sizeof(tuple.ipv4), &opts, sizeof(opts));

	if (ct)
		bpf_ct_release(ct);
	return TC_ACT_OK;
}
