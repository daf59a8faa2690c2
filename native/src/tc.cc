// tc (clsact, direct-action) attachments through libbpf's bpf_tc_* API
// (libbpf 1.1: no tcx links). Each call may run inside another netns: the
// worker thread enters it, opens its netlink socket there, and comes back.
#include "bpf_common.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <unistd.h>

namespace vnet {
namespace {

struct TcTarget {
  uint32_t ifindex = 0;
  std::string ifname;
  enum bpf_tc_attach_point point = BPF_TC_INGRESS;
  uint32_t handle = 0;
  uint32_t priority = 0;
  std::string netns;
};

// { ifindex? | ifname?, direction: 'ingress'|'egress'|'both', handle?, priority?, netns? }
bool ParseTarget(Napi::Env env, Napi::Value v, TcTarget* t, bool need_filter) {
  if (!v.IsObject()) {
    ThrowType(env, "target must be an object");
    return false;
  }
  Napi::Object o = v.As<Napi::Object>();
  if (o.Get("ifindex").IsNumber()) t->ifindex = o.Get("ifindex").As<Napi::Number>().Uint32Value();
  if (o.Get("ifname").IsString()) t->ifname = o.Get("ifname").As<Napi::String>().Utf8Value();
  if (!t->ifindex && t->ifname.empty()) {
    ThrowType(env, "target needs ifindex or ifname");
    return false;
  }
  std::string dir = o.Get("direction").IsString() ? o.Get("direction").As<Napi::String>().Utf8Value() : "";
  if (dir == "ingress") t->point = BPF_TC_INGRESS;
  else if (dir == "egress") t->point = BPF_TC_EGRESS;
  else if (dir == "both" && !need_filter) t->point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
  else {
    ThrowType(env, "target.direction must be 'ingress' or 'egress'");
    return false;
  }
  if (o.Get("handle").IsNumber()) t->handle = o.Get("handle").As<Napi::Number>().Uint32Value();
  if (o.Get("priority").IsNumber()) t->priority = o.Get("priority").As<Napi::Number>().Uint32Value();
  if (need_filter && (!t->handle || !t->priority || t->priority > 0xffff)) {
    ThrowType(env, "target needs handle and priority (1..65535)");
    return false;
  }
  if (o.Get("netns").IsString()) t->netns = o.Get("netns").As<Napi::String>().Utf8Value();
  return true;
}

// Base: enter the netns, resolve the interface, then DoTc().
class TcWorker : public PromiseWorker {
 public:
  TcWorker(Napi::Env env, TcTarget target) : PromiseWorker(env), t_(std::move(target)) {}

  void Execute() override {
    NetnsGuard ns;
    const char* op = nullptr;
    if (int err = ns.Enter(t_.netns, &op)) return Fail(op, err, t_.netns);
    if (!t_.ifindex) {
      t_.ifindex = if_nametoindex(t_.ifname.c_str());
      if (!t_.ifindex) return Fail("if_nametoindex", errno ? errno : ENODEV, t_.ifname);
    }
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(t_.ifindex), .attach_point = t_.point);
    DoTc(&hook);
  }

 protected:
  virtual void DoTc(struct bpf_tc_hook* hook) = 0;
  TcTarget t_;
};

class AttachWorker : public TcWorker {
 public:
  AttachWorker(Napi::Env env, TcTarget t, int prog_fd, bool replace)
      : TcWorker(env, std::move(t)), prog_fd_(prog_fd), replace_(replace) {}
  ~AttachWorker() override { close(prog_fd_); }

  void DoTc(struct bpf_tc_hook* hook) override {
    // An existing clsact qdisc (-EEXIST) is fine; remember whether we made
    // it, so only a qdisc we created is ever destroyed.
    int err = bpf_tc_hook_create(hook);
    if (err == 0) created_ = true;
    else if (err != -EEXIST) return Fail("bpf_tc_hook_create", -err, Where());
    LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd_, .flags = replace_ ? static_cast<__u32>(BPF_TC_F_REPLACE) : 0u,
                .handle = t_.handle, .priority = t_.priority);
    err = bpf_tc_attach(hook, &opts);
    if (err) {
      if (created_) {
        hook->attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
        bpf_tc_hook_destroy(hook);
        created_ = false;
      }
      return Fail("bpf_tc_attach", -err, Where());
    }
    prog_id_ = opts.prog_id;
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object r = Napi::Object::New(env);
    r.Set("ifindex", Napi::Number::New(env, t_.ifindex));
    r.Set("createdHook", Napi::Boolean::New(env, created_));
    r.Set("progId", Napi::Number::New(env, prog_id_));
    return r;
  }

 private:
  std::string Where() const { return t_.ifname.empty() ? "ifindex " + std::to_string(t_.ifindex) : t_.ifname; }
  int prog_fd_;
  bool replace_;
  bool created_ = false;
  uint32_t prog_id_ = 0;
};

class DetachWorker : public TcWorker {
 public:
  using TcWorker::TcWorker;
  void DoTc(struct bpf_tc_hook* hook) override {
    LIBBPF_OPTS(bpf_tc_opts, opts, .handle = t_.handle, .priority = t_.priority);
    int err = bpf_tc_detach(hook, &opts);
    if (err == 0) detached_ = true;
    else if (err != -ENOENT && err != -EINVAL) Fail("bpf_tc_detach", -err);  // EINVAL: no clsact at all
  }
  Napi::Value Result(Napi::Env env) override { return Napi::Boolean::New(env, detached_); }

 private:
  bool detached_ = false;
};

class QueryWorker : public TcWorker {
 public:
  using TcWorker::TcWorker;
  void DoTc(struct bpf_tc_hook* hook) override {
    LIBBPF_OPTS(bpf_tc_opts, opts, .handle = t_.handle, .priority = t_.priority);
    int err = bpf_tc_query(hook, &opts);
    if (err == 0) prog_id_ = opts.prog_id;
    else if (err != -ENOENT && err != -EINVAL) Fail("bpf_tc_query", -err);
  }
  Napi::Value Result(Napi::Env env) override {
    if (!prog_id_) return env.Null();
    Napi::Object r = Napi::Object::New(env);
    r.Set("ifindex", Napi::Number::New(env, t_.ifindex));
    r.Set("progId", Napi::Number::New(env, prog_id_));
    return r;
  }

 private:
  uint32_t prog_id_ = 0;
};

class DestroyHookWorker : public TcWorker {
 public:
  using TcWorker::TcWorker;
  void DoTc(struct bpf_tc_hook* hook) override {
    hook->attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
    int err = bpf_tc_hook_destroy(hook);
    if (err == 0) destroyed_ = true;
    else if (err != -ENOENT && err != -EINVAL) Fail("bpf_tc_hook_destroy", -err);
  }
  Napi::Value Result(Napi::Env env) override { return Napi::Boolean::New(env, destroyed_); }

 private:
  bool destroyed_ = false;
};

class ListLinksWorker : public PromiseWorker {
 public:
  ListLinksWorker(Napi::Env env, std::string netns) : PromiseWorker(env), netns_(std::move(netns)) {}
  void Execute() override {
    NetnsGuard ns;
    const char* op = nullptr;
    if (int err = ns.Enter(netns_, &op)) return Fail(op, err, netns_);
    struct if_nameindex* list = if_nameindex();
    if (!list) return Fail("if_nameindex", errno);
    for (struct if_nameindex* i = list; i->if_index != 0; i++) links_.emplace_back(i->if_name, i->if_index);
    if_freenameindex(list);
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Array out = Napi::Array::New(env, links_.size());
    for (uint32_t i = 0; i < links_.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", Napi::String::New(env, links_[i].first));
      o.Set("index", Napi::Number::New(env, links_[i].second));
      out.Set(i, o);
    }
    return out;
  }

 private:
  std::string netns_;
  std::vector<std::pair<std::string, uint32_t>> links_;
};

template <typename W>
Napi::Value Queue(W* w) {
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// tcAttach(program, target & { replace? }) -> Promise<{ ifindex, createdHook, progId }>
Napi::Value TcAttach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !BpfProgram::Is(env, info[0])) {
    ThrowType(env, "tcAttach(program: BpfProgram, target: object)");
    return env.Undefined();
  }
  TcTarget t;
  if (!ParseTarget(env, info[1], &t, true)) return env.Undefined();
  bool replace = info[1].As<Napi::Object>().Get("replace").ToBoolean().Value();
  int fd = BpfProgram::Unwrap(info[0].As<Napi::Object>())->fd();
  if (fd < 0) {
    ThrowError(env, "tcAttach", EBADF, "program is closed");
    return env.Undefined();
  }
  fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) {
    ThrowError(env, "dup", errno);
    return env.Undefined();
  }
  return Queue(new AttachWorker(env, std::move(t), fd, replace));
}

// tcDetach(target) -> Promise<boolean> (false: nothing was attached there)
Napi::Value TcDetach(const Napi::CallbackInfo& info) {
  TcTarget t;
  if (!ParseTarget(info.Env(), info[0], &t, true)) return info.Env().Undefined();
  return Queue(new DetachWorker(info.Env(), std::move(t)));
}

// tcQuery(target) -> Promise<{ ifindex, progId } | null>
Napi::Value TcQuery(const Napi::CallbackInfo& info) {
  TcTarget t;
  if (!ParseTarget(info.Env(), info[0], &t, true)) return info.Env().Undefined();
  return Queue(new QueryWorker(info.Env(), std::move(t)));
}

// tcDestroyHook(target) -> Promise<boolean>: removes the clsact qdisc (both directions).
Napi::Value TcDestroyHook(const Napi::CallbackInfo& info) {
  TcTarget t;
  if (!ParseTarget(info.Env(), info[0], &t, false)) return info.Env().Undefined();
  return Queue(new DestroyHookWorker(info.Env(), std::move(t)));
}

// listLinks(netns?) -> Promise<Array<{ name, index }>>
Napi::Value ListLinks(const Napi::CallbackInfo& info) {
  std::string netns = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  return Queue(new ListLinksWorker(info.Env(), netns));
}

}  // namespace

Napi::Object InitTc(Napi::Env env, Napi::Object exports) {
  exports.Set("tcAttach", Napi::Function::New(env, TcAttach));
  exports.Set("tcDetach", Napi::Function::New(env, TcDetach));
  exports.Set("tcQuery", Napi::Function::New(env, TcQuery));
  exports.Set("tcDestroyHook", Napi::Function::New(env, TcDestroyHook));
  exports.Set("listLinks", Napi::Function::New(env, ListLinks));
  return exports;
}

}  // namespace vnet
