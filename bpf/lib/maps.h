/* Map definitions, counters and config access. Layouts: include/vnet_maps.h. */
#ifndef VNET_LIB_MAPS_H
#define VNET_LIB_MAPS_H

#include "defs.h"
#include "vnet_maps.h"


struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VNET_ENDPOINTS_MAX);
	__type(key, __u32);
	__type(value, struct vnet_endpoint);
} vnet_endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, VNET_CIDRS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct vnet_lpm_key);
	__type(value, struct vnet_cidr_info);
} vnet_cidrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vnet_config);
} vnet_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, VNET_NAT_MAX);
	__type(key, struct vnet_nat_tuple);
	__type(value, struct vnet_nat_entry);
} vnet_snat_fwd SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, VNET_NAT_MAX);
	__type(key, struct vnet_nat_tuple);
	__type(value, struct vnet_nat_entry);
} vnet_snat_rev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, VNET_INBOUND_MAX);
	__type(key, struct vnet_nat_tuple);
	__type(value, struct vnet_flow_entry);
} vnet_inbound SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VNET_COUNTERS_MAX);
	__type(key, __u32);
	__type(value, __u64);
} vnet_reasons SEC(".maps");

/* NetworkPolicy (layouts and meaning: include/vnet_maps.h, lib/policy.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VNET_POL_EPS_MAX);
	__type(key, struct vnet_pol_ep_key);
	__type(value, struct vnet_pol_ep);
} vnet_pol_eps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VNET_POL_IDS_MAX);
	__type(key, __u32);
	__type(value, struct vnet_pol_id_val);
} vnet_pol_ids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, VNET_POL_CIDRS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct vnet_pol_cidr_key);
	__type(value, struct vnet_pol_match);
} vnet_pol_cidrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, VNET_POL_PORTS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct vnet_pol_port_key);
	__type(value, struct vnet_pol_port_val);
} vnet_pol_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, VNET_POL_FLOWS_MAX);
	__type(key, struct vnet_pol_flow_key);
	__type(value, struct vnet_flow_entry);
} vnet_pol_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, VNET_POL_DROPS_MAX);
	__type(key, struct vnet_pol_ep_key);
	__type(value, __u64);
} vnet_pol_drops SEC(".maps");

static __always_inline void counter_inc(enum vnet_reason reason)
{
	__u32 key = reason;
	__u64 *value = bpf_map_lookup_elem(&vnet_reasons, &key);
	if (value)
		*value += 1; /* per-CPU slot: no atomics needed */
}

static __always_inline int pass(enum vnet_reason reason)
{
	counter_inc(reason);
	return TC_ACT_OK;
}

static __always_inline int drop(enum vnet_reason reason)
{
	counter_inc(reason);
	return TC_ACT_SHOT;
}

static __always_inline const struct vnet_config *config_get(void)
{
	__u32 key = VNET_CONFIG_KEY;
	const struct vnet_config *cfg = bpf_map_lookup_elem(&vnet_config, &key);
	if (!cfg || !(cfg->flags & VNET_CFG_F_READY))
		return NULL;
	return cfg;
}

static __always_inline struct vnet_endpoint *endpoint_lookup(__u32 addr)
{
	return bpf_map_lookup_elem(&vnet_endpoints, &addr);
}

/* VNET_CIDR_F_* of the longest matching prefix, 0 if none. */
static __always_inline __u32 cidr_flags(__u32 addr)
{
	struct vnet_lpm_key key = { .prefixlen = 32, .addr = addr };
	struct vnet_cidr_info *info = bpf_map_lookup_elem(&vnet_cidrs, &key);
	return info ? info->flags : 0;
}

#endif
