// Entry point of the vnet-cni native addon. Each concern registers its own
// functions; see the per-file comments for what runs off the JS thread.
//   flock.cc        flock/funlock for the durable store
//   bpf_object.cc   object load, pins          (bpf_common.h: error mode)
//   bpf_program.cc  program handles, BPF_PROG_TEST_RUN
//   bpf_map.cc      map handles and operations
//   tc.cc           clsact attach/detach/query, link listing
//   layouts.cc      map layouts + counter labels from bpf/include/vnet_maps.h
//   netlink.cc      rtnetlink links/addresses/routes + /proc/sys writes (ADD/DEL paths)
#include <malloc.h>
#include <napi.h>

#include "bpf_common.h"

Napi::Object InitFlock(Napi::Env env, Napi::Object exports);

// trimMemory(): hand glibc's free pages back to the OS (every arena, not just
// the top of the main heap). The daemon calls it when it goes idle: libuv's
// pool threads each get an arena, and the netlink/flock/BPF work done there
// leaves free but resident pages scattered through them.
static Napi::Value TrimMemory(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), malloc_trim(0) == 1);
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // At most two malloc arenas (the default is 8 per core): fewer places for
  // freed memory to sit resident in a process that lives as long as the node.
  mallopt(M_ARENA_MAX, 2);
  exports.Set("trimMemory", Napi::Function::New(env, TrimMemory));
  InitFlock(env, exports);
  vnet::InitBpf(env, exports);
  vnet::InitTc(env, exports);
  vnet::InitLayouts(env, exports);
  vnet::InitNetlink(env, exports);
  return exports;
}

NODE_API_MODULE(vnet_native, Init)
