// BpfProgram: one program fd. testRun (BPF_PROG_TEST_RUN) runs off the JS
// thread, optionally inside another netns (FIB and conntrack lookups in the
// program resolve in the netns of the thread that runs the test).
#include "bpf_common.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <string.h>
#include <unistd.h>

namespace vnet {
namespace {

class TestRunWorker : public PromiseWorker {
 public:
  TestRunWorker(Napi::Env env, int fd, std::vector<uint8_t> data, size_t out_size, int repeat, bool has_ctx,
                const struct __sk_buff& ctx, std::string netns)
      : PromiseWorker(env), fd_(fd), in_(std::move(data)), out_(out_size), repeat_(repeat), has_ctx_(has_ctx),
        ctx_(ctx), netns_(std::move(netns)) {}
  ~TestRunWorker() override { close(fd_); }

  void Execute() override {
    NetnsGuard ns;
    const char* op = nullptr;
    if (int err = ns.Enter(netns_, &op)) return Fail(op, err, netns_);
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in_.data(), .data_out = out_.data(),
                .data_size_in = static_cast<__u32>(in_.size()), .data_size_out = static_cast<__u32>(out_.size()),
                .repeat = repeat_);
    struct __sk_buff ctx_out = {};
    if (has_ctx_) {
      opts.ctx_in = &ctx_;
      opts.ctx_size_in = sizeof(ctx_);
      opts.ctx_out = &ctx_out;
      opts.ctx_size_out = sizeof(ctx_out);
    }
    if (bpf_prog_test_run_opts(fd_, &opts) != 0) return Fail("bpf_prog_test_run_opts", errno);
    retval_ = opts.retval;
    duration_ = opts.duration;
    out_.resize(opts.data_size_out);
    if (has_ctx_) ctx_ = ctx_out;
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object r = Napi::Object::New(env);
    r.Set("retval", Napi::Number::New(env, static_cast<int32_t>(retval_)));
    r.Set("duration", Napi::Number::New(env, duration_));
    r.Set("data", Napi::Buffer<uint8_t>::Copy(env, out_.data(), out_.size()));
    if (has_ctx_) {
      Napi::Object c = Napi::Object::New(env);
      c.Set("mark", Napi::Number::New(env, ctx_.mark));
      c.Set("priority", Napi::Number::New(env, ctx_.priority));
      c.Set("ifindex", Napi::Number::New(env, ctx_.ifindex));
      r.Set("ctx", c);
    }
    return r;
  }

 private:
  int fd_;
  std::vector<uint8_t> in_, out_;
  int repeat_;
  bool has_ctx_;
  struct __sk_buff ctx_;
  std::string netns_;
  uint32_t retval_ = 0, duration_ = 0;
};

uint32_t U32(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : 0;
}

}  // namespace

Napi::Function BpfProgram::Define(Napi::Env env) {
  return DefineClass(env, "BpfProgram",
                     {InstanceAccessor("fd", &BpfProgram::Fd, nullptr),
                      InstanceAccessor("name", &BpfProgram::Name, nullptr), InstanceMethod("info", &BpfProgram::Info),
                      InstanceMethod("pin", &BpfProgram::Pin), InstanceMethod("testRun", &BpfProgram::TestRun),
                      InstanceMethod("close", &BpfProgram::Close)});
}

Napi::Object BpfProgram::New(Napi::Env env, int fd, const std::string& name) {
  Napi::Object o = env.GetInstanceData<AddonData>()->program_ctor.New({});
  BpfProgram* p = BpfProgram::Unwrap(o);
  p->fd_ = fd;
  p->name_ = name;
  return o;
}

bool BpfProgram::Is(Napi::Env env, Napi::Value value) {
  return value.IsObject() && value.As<Napi::Object>().InstanceOf(env.GetInstanceData<AddonData>()->program_ctor.Value());
}

BpfProgram::BpfProgram(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfProgram>(info) {}

BpfProgram::~BpfProgram() {
  if (fd_ >= 0) close(fd_);
}

bool BpfProgram::Open(Napi::Env env) {
  if (fd_ >= 0) return true;
  ThrowError(env, "BpfProgram", EBADF, name_ + " is closed");
  return false;
}

Napi::Value BpfProgram::Fd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }
Napi::Value BpfProgram::Name(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), name_); }

// info() -> { id, type, tag, name }
Napi::Value BpfProgram::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Open(env)) return env.Undefined();
  struct bpf_prog_info pi = {};
  __u32 len = sizeof(pi);
  if (bpf_obj_get_info_by_fd(fd_, &pi, &len) != 0) {
    ThrowError(env, "bpf_obj_get_info_by_fd", errno, name_);
    return env.Undefined();
  }
  char tag[2 * BPF_TAG_SIZE + 1];
  for (int i = 0; i < BPF_TAG_SIZE; i++) snprintf(tag + 2 * i, 3, "%02x", pi.tag[i]);
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", Napi::Number::New(env, pi.id));
  o.Set("type", Napi::Number::New(env, pi.type));
  o.Set("tag", Napi::String::New(env, tag));
  o.Set("name", Napi::String::New(env, pi.name));
  return o;
}

Napi::Value BpfProgram::Pin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Open(env)) return env.Undefined();
  if (info.Length() < 1 || !info[0].IsString()) {
    ThrowType(env, "pin(path: string)");
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  if (bpf_obj_pin(fd_, path.c_str()) != 0) ThrowError(env, "bpf_obj_pin", errno, path);
  return env.Undefined();
}

// testRun({ data: Buffer, repeat?, dataOutSize?, ctx?: { ingressIfindex?, ifindex?, mark?, priority? }, netns? })
//   -> Promise<{ retval, duration, data, ctx? }>
Napi::Value BpfProgram::TestRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Open(env)) return env.Undefined();
  if (info.Length() < 1 || !info[0].IsObject()) {
    ThrowType(env, "testRun(options: object)");
    return env.Undefined();
  }
  Napi::Object opts = info[0].As<Napi::Object>();
  std::vector<uint8_t> data;
  if (!CopyBuffer(env, opts.Get("data"), 0, "data", &data)) return env.Undefined();
  size_t out_size = opts.Get("dataOutSize").IsNumber() ? U32(opts, "dataOutSize") : data.size() + 256;
  int repeat = opts.Get("repeat").IsNumber() ? static_cast<int>(U32(opts, "repeat")) : 1;
  std::string netns = opts.Get("netns").IsString() ? opts.Get("netns").As<Napi::String>().Utf8Value() : "";
  struct __sk_buff ctx = {};
  bool has_ctx = opts.Get("ctx").IsObject();
  if (has_ctx) {
    Napi::Object c = opts.Get("ctx").As<Napi::Object>();
    ctx.ingress_ifindex = U32(c, "ingressIfindex");
    ctx.ifindex = U32(c, "ifindex");
    ctx.mark = U32(c, "mark");
    ctx.priority = U32(c, "priority");
  }
  int fd = fcntl(fd_, F_DUPFD_CLOEXEC, 0);  // the worker keeps its own fd: close() may race it
  if (fd < 0) {
    ThrowError(env, "dup", errno, name_);
    return env.Undefined();
  }
  auto* w = new TestRunWorker(env, fd, std::move(data), out_size, repeat, has_ctx, ctx, netns);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value BpfProgram::Close(const Napi::CallbackInfo& info) {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  return info.Env().Undefined();
}

}  // namespace vnet
