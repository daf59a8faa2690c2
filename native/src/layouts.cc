// The map layouts as this compiler sees bpf/include/vnet_maps.h (the same
// header the BPF programs use), and the counter reason labels from its one
// central list. TS reads them to check its encoders (test/bpf/layouts.test.ts)
// and to name counters without a second copy of the list.
#include <napi.h>
#include <linux/types.h>
#include <stddef.h>

#include "vnet_maps.h"

namespace vnet {
namespace {

// LAYOUT(name, M(member), ...): out[name] = { size, offsets: { member: offset } }
// as this compiler lays out struct name (M() needs S and offsets, set by LAYOUT).
#define LAYOUT(name, ...)                                                             \
  do {                                                                                \
    using S = struct name;                                                            \
    Napi::Object offsets = Napi::Object::New(env);                                    \
    __VA_ARGS__;                                                                      \
    Napi::Object layout = Napi::Object::New(env);                                     \
    layout.Set("size", Napi::Number::New(env, static_cast<double>(sizeof(S))));       \
    layout.Set("offsets", offsets);                                                   \
    out.Set(#name, layout);                                                           \
  } while (0)
#define M(member) offsets.Set(#member, Napi::Number::New(env, static_cast<double>(offsetof(S, member))))

// layouts() -> { [struct]: { size, offsets: { [member]: number } } }
Napi::Value Layouts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  LAYOUT(vnet_endpoint, M(ifindex), M(flags), M(pod_mac), M(host_mac));
  LAYOUT(vnet_lpm_key, M(prefixlen), M(addr));
  LAYOUT(vnet_cidr_info, M(flags));
  LAYOUT(vnet_config, M(primary_ip), M(nic_ifindex), M(nic_mac), M(flags), M(nat_port_min), M(nat_port_max),
         M(ctl_flags), M(tcp_timeout_ns), M(udp_timeout_ns), M(icmp_timeout_ns), M(tcp_fin_timeout_ns),
         M(tcp_rst_timeout_ns));
  LAYOUT(vnet_nat_tuple, M(saddr), M(daddr), M(sport), M(dport), M(proto));
  LAYOUT(vnet_nat_entry, M(addr), M(port), M(flags), M(last_seen_ns));
  LAYOUT(vnet_flow_entry, M(last_seen_ns));
  LAYOUT(vnet_pol_ep_key, M(family), M(dir), M(addr));
  LAYOUT(vnet_pol_ep, M(ingress_id), M(egress_id), M(flags));
  LAYOUT(vnet_pol_cidr_key, M(prefixlen), M(id), M(family), M(addr));
  LAYOUT(vnet_pol_match, M(set), M(flags));
  LAYOUT(vnet_pol_port_key, M(prefixlen), M(id), M(set), M(proto), M(port));
  LAYOUT(vnet_pol_port_val, M(allow));
  LAYOUT(vnet_pol_id_val, M(digest));
  LAYOUT(vnet_pol_flow_key, M(local), M(remote), M(lport), M(rport), M(proto), M(family), M(kind));
  return out;
}

#undef M
#undef LAYOUT

// reasons() -> string[]: label of each counter index, in enum order.
Napi::Value Reasons(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  static const char* const kLabels[] = {
#define VNET_REASON_LABEL(name, label) label,
      VNET_REASONS(VNET_REASON_LABEL)
#undef VNET_REASON_LABEL
  };
  static_assert(sizeof(kLabels) / sizeof(kLabels[0]) == VNET_REASON_MAX, "one label per reason");
  Napi::Array out = Napi::Array::New(env, VNET_REASON_MAX);
  for (uint32_t i = 0; i < VNET_REASON_MAX; i++) out.Set(i, Napi::String::New(env, kLabels[i]));
  return out;
}

}  // namespace

Napi::Object InitLayouts(Napi::Env env, Napi::Object exports) {
  exports.Set("layouts", Napi::Function::New(env, Layouts));
  exports.Set("reasons", Napi::Function::New(env, Reasons));
  return exports;
}

}  // namespace vnet
