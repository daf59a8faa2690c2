// Entry point of the vnet-cni native addon. Each concern registers its own
// functions; see the per-file comments for what runs off the JS thread.
//   flock.cc        flock/funlock for the durable store
//   bpf_object.cc   object load, pins          (bpf_common.h: error mode)
//   bpf_program.cc  program handles, BPF_PROG_TEST_RUN
//   bpf_map.cc      map handles and operations
//   tc.cc           clsact attach/detach/query, link listing
//   layouts.cc      map layouts + counter labels from bpf/include/vnet_maps.h
//   netlink.cc      rtnetlink links/addresses/routes + /proc/sys writes (ADD/DEL paths)
#include <napi.h>

#include "bpf_common.h"

Napi::Object InitFlock(Napi::Env env, Napi::Object exports);

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitFlock(env, exports);
  vnet::InitBpf(env, exports);
  vnet::InitTc(env, exports);
  vnet::InitLayouts(env, exports);
  vnet::InitNetlink(env, exports);
  return exports;
}

NODE_API_MODULE(vnet_native, Init)
