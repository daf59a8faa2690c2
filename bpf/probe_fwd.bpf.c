// SPDX-License-Identifier: GPL-2.0
/* probeKernel(): loads only if the kernel has every helper the dataplane uses. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "lib/defs.h"

char LICENSE[] SEC("license") = "GPL";

SEC("tc")
int probe_fwd(struct __sk_buff *skb)
{
	struct bpf_fib_lookup fib = { .family = AF_INET, .ifindex = skb->ingress_ifindex };

	if (skb->mark == 1)
		return bpf_redirect_peer(skb->ifindex, 0);
	if (skb->mark == 2)
		return bpf_redirect_neigh(skb->ifindex, NULL, 0, 0);
	if (skb->mark == 3)
		return bpf_fib_lookup(skb, &fib, sizeof(fib), 0) == 0 ? TC_ACT_OK : TC_ACT_SHOT;
	return bpf_redirect(skb->ifindex, 0);
}
