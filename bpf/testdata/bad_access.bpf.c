// SPDX-License-Identifier: GPL-2.0
/* Deliberately rejected by the verifier (packet read without a bounds
 * check): test/bpf checks that the rejection surfaces err.verifierLog. */
#include "../vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tc")
int bad_access(struct __sk_buff *skb)
{
	__u8 *data = (__u8 *)(long)skb->data;

	return data[20];
}
