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

#define FIELD(obj, type, member) obj.Set(#member, Napi::Number::New(env, offsetof(struct type, member)))

Napi::Object Struct(Napi::Env env, size_t size) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("size", Napi::Number::New(env, static_cast<double>(size)));
  return o;
}

// layouts() -> { [struct]: { size, offsets: { [member]: number } } }
Napi::Value Layouts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);

  Napi::Object ep = Struct(env, sizeof(struct vnet_endpoint)), epo = Napi::Object::New(env);
  FIELD(epo, vnet_endpoint, ifindex); FIELD(epo, vnet_endpoint, flags);
  FIELD(epo, vnet_endpoint, pod_mac); FIELD(epo, vnet_endpoint, host_mac);
  ep.Set("offsets", epo);
  out.Set("vnet_endpoint", ep);

  Napi::Object lk = Struct(env, sizeof(struct vnet_lpm_key)), lko = Napi::Object::New(env);
  FIELD(lko, vnet_lpm_key, prefixlen); FIELD(lko, vnet_lpm_key, addr);
  lk.Set("offsets", lko);
  out.Set("vnet_lpm_key", lk);

  Napi::Object ci = Struct(env, sizeof(struct vnet_cidr_info)), cio = Napi::Object::New(env);
  FIELD(cio, vnet_cidr_info, flags);
  ci.Set("offsets", cio);
  out.Set("vnet_cidr_info", ci);

  Napi::Object cf = Struct(env, sizeof(struct vnet_config)), cfo = Napi::Object::New(env);
  FIELD(cfo, vnet_config, primary_ip); FIELD(cfo, vnet_config, nic_ifindex); FIELD(cfo, vnet_config, nic_mac);
  FIELD(cfo, vnet_config, flags); FIELD(cfo, vnet_config, nat_port_min); FIELD(cfo, vnet_config, nat_port_max);
  FIELD(cfo, vnet_config, ctl_flags);
  FIELD(cfo, vnet_config, tcp_timeout_ns); FIELD(cfo, vnet_config, udp_timeout_ns);
  FIELD(cfo, vnet_config, icmp_timeout_ns); FIELD(cfo, vnet_config, tcp_fin_timeout_ns);
  FIELD(cfo, vnet_config, tcp_rst_timeout_ns);
  cf.Set("offsets", cfo);
  out.Set("vnet_config", cf);

  Napi::Object nt = Struct(env, sizeof(struct vnet_nat_tuple)), nto = Napi::Object::New(env);
  FIELD(nto, vnet_nat_tuple, saddr); FIELD(nto, vnet_nat_tuple, daddr); FIELD(nto, vnet_nat_tuple, sport);
  FIELD(nto, vnet_nat_tuple, dport); FIELD(nto, vnet_nat_tuple, proto);
  nt.Set("offsets", nto);
  out.Set("vnet_nat_tuple", nt);

  Napi::Object ne = Struct(env, sizeof(struct vnet_nat_entry)), neo = Napi::Object::New(env);
  FIELD(neo, vnet_nat_entry, addr); FIELD(neo, vnet_nat_entry, port); FIELD(neo, vnet_nat_entry, flags);
  FIELD(neo, vnet_nat_entry, last_seen_ns);
  ne.Set("offsets", neo);
  out.Set("vnet_nat_entry", ne);

  Napi::Object fe = Struct(env, sizeof(struct vnet_flow_entry)), feo = Napi::Object::New(env);
  FIELD(feo, vnet_flow_entry, last_seen_ns);
  fe.Set("offsets", feo);
  out.Set("vnet_flow_entry", fe);

  Napi::Object pek = Struct(env, sizeof(struct vnet_pol_ep_key)), peko = Napi::Object::New(env);
  FIELD(peko, vnet_pol_ep_key, family); FIELD(peko, vnet_pol_ep_key, dir); FIELD(peko, vnet_pol_ep_key, addr);
  pek.Set("offsets", peko);
  out.Set("vnet_pol_ep_key", pek);

  Napi::Object pe = Struct(env, sizeof(struct vnet_pol_ep)), peo = Napi::Object::New(env);
  FIELD(peo, vnet_pol_ep, ingress_id); FIELD(peo, vnet_pol_ep, egress_id); FIELD(peo, vnet_pol_ep, flags);
  pe.Set("offsets", peo);
  out.Set("vnet_pol_ep", pe);

  Napi::Object pck = Struct(env, sizeof(struct vnet_pol_cidr_key)), pcko = Napi::Object::New(env);
  FIELD(pcko, vnet_pol_cidr_key, prefixlen); FIELD(pcko, vnet_pol_cidr_key, id);
  FIELD(pcko, vnet_pol_cidr_key, family); FIELD(pcko, vnet_pol_cidr_key, addr);
  pck.Set("offsets", pcko);
  out.Set("vnet_pol_cidr_key", pck);

  Napi::Object pm = Struct(env, sizeof(struct vnet_pol_match)), pmo = Napi::Object::New(env);
  FIELD(pmo, vnet_pol_match, set); FIELD(pmo, vnet_pol_match, flags);
  pm.Set("offsets", pmo);
  out.Set("vnet_pol_match", pm);

  Napi::Object ppk = Struct(env, sizeof(struct vnet_pol_port_key)), ppko = Napi::Object::New(env);
  FIELD(ppko, vnet_pol_port_key, prefixlen); FIELD(ppko, vnet_pol_port_key, id); FIELD(ppko, vnet_pol_port_key, set);
  FIELD(ppko, vnet_pol_port_key, proto); FIELD(ppko, vnet_pol_port_key, port);
  ppk.Set("offsets", ppko);
  out.Set("vnet_pol_port_key", ppk);

  Napi::Object ppv = Struct(env, sizeof(struct vnet_pol_port_val)), ppvo = Napi::Object::New(env);
  FIELD(ppvo, vnet_pol_port_val, allow);
  ppv.Set("offsets", ppvo);
  out.Set("vnet_pol_port_val", ppv);

  Napi::Object piv = Struct(env, sizeof(struct vnet_pol_id_val)), pivo = Napi::Object::New(env);
  FIELD(pivo, vnet_pol_id_val, digest);
  piv.Set("offsets", pivo);
  out.Set("vnet_pol_id_val", piv);

  Napi::Object pfk = Struct(env, sizeof(struct vnet_pol_flow_key)), pfko = Napi::Object::New(env);
  FIELD(pfko, vnet_pol_flow_key, local); FIELD(pfko, vnet_pol_flow_key, remote); FIELD(pfko, vnet_pol_flow_key, lport);
  FIELD(pfko, vnet_pol_flow_key, rport); FIELD(pfko, vnet_pol_flow_key, proto); FIELD(pfko, vnet_pol_flow_key, family);
  FIELD(pfko, vnet_pol_flow_key, kind);
  pfk.Set("offsets", pfko);
  out.Set("vnet_pol_flow_key", pfk);
  return out;
}

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
