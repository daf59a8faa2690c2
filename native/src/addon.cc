// Entry point of the vnet-cni native addon. Each concern registers its own
// functions; see the per-file comments for what runs off the JS thread.
#include <napi.h>

Napi::Object InitFlock(Napi::Env env, Napi::Object exports);

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitFlock(env, exports);
  return exports;
}

NODE_API_MODULE(vnet_native, Init)
