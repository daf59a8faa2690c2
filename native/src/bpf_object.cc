// Object load (AsyncWorker) and the BpfObject wrap, plus opening pins.
#include "bpf_common.h"

#include <malloc.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace vnet {
namespace {

struct InitialValue {
  std::string map;
  std::vector<uint8_t> data;
};

class LoadWorker : public PromiseWorker {
 public:
  LoadWorker(Napi::Env env, std::string path, std::string pin_maps_dir, std::vector<InitialValue> initial)
      : PromiseWorker(env), path_(std::move(path)), pin_maps_dir_(std::move(pin_maps_dir)),
        initial_(std::move(initial)) {}
  ~LoadWorker() override {
    if (obj_) bpf_object__close(obj_);  // only if never handed to JS
  }

  void Execute() override {
    LogCapture capture(&log_);
    obj_ = bpf_object__open_file(path_.c_str(), nullptr);
    if (!obj_) return Fail("bpf_object__open_file", errno, path_);
    for (const InitialValue& iv : initial_) {
      struct bpf_map* map = bpf_object__find_map_by_name(obj_, iv.map.c_str());
      if (!map) return Fail("bpf_object__find_map_by_name", ENOENT, iv.map);
      int err = bpf_map__set_initial_value(map, iv.data.data(), iv.data.size());
      if (err) return Fail("bpf_map__set_initial_value", -err, iv.map);
    }
    if (!pin_maps_dir_.empty()) {
      // libbpf reuses a compatible pinned map at this path, or creates the
      // map and pins it there after the load.
      struct bpf_map* map;
      bpf_object__for_each_map(map, obj_) {
        if (bpf_map__is_internal(map)) continue;
        std::string pin = pin_maps_dir_ + "/" + bpf_map__name(map);
        int err = bpf_map__set_pin_path(map, pin.c_str());
        if (err) return Fail("bpf_map__set_pin_path", -err, pin);
      }
    }
    int err = bpf_object__load(obj_);
    // The load parsed the kernel's BTF (tens of MB of small allocations, freed
    // by libbpf right after) on this pool thread; glibc keeps such memory in
    // the thread's arena, so a daemon would hold it as RSS for good. Hand it back.
    malloc_trim(0);
    if (err) return Fail("bpf_object__load", -err, path_);
  }

  Napi::Value Result(Napi::Env env) override {
    struct bpf_object* obj = obj_;
    obj_ = nullptr;
    return BpfObject::New(env, obj, path_);
  }

  void Decorate(Napi::Error& e) override {
    Napi::Env env = e.Env();
    e.Set("libbpfLog", Napi::String::New(env, log_));
    std::string verifier = ExtractVerifierLog(log_);
    if (!verifier.empty()) e.Set("verifierLog", Napi::String::New(env, verifier));
  }

 private:
  std::string path_, pin_maps_dir_, log_;
  std::vector<InitialValue> initial_;
  struct bpf_object* obj_ = nullptr;
};

// loadObject(path, { pinMapsDir?, initialValues?: { [map]: Buffer } }) -> Promise<BpfObject>
Napi::Value LoadObject(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    ThrowType(env, "loadObject(path: string, options?: object)");
    return env.Undefined();
  }
  std::string pin_dir;
  std::vector<InitialValue> initial;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Object opts = info[1].As<Napi::Object>();
    Napi::Value pin = opts.Get("pinMapsDir");
    if (pin.IsString()) pin_dir = pin.As<Napi::String>().Utf8Value();
    Napi::Value iv = opts.Get("initialValues");
    if (iv.IsObject()) {
      Napi::Object ivo = iv.As<Napi::Object>();
      Napi::Array names = ivo.GetPropertyNames();
      for (uint32_t i = 0; i < names.Length(); i++) {
        InitialValue v;
        v.map = names.Get(i).As<Napi::String>().Utf8Value();
        if (!CopyBuffer(env, ivo.Get(v.map), 0, "initialValues entry", &v.data)) return env.Undefined();
        initial.push_back(std::move(v));
      }
    }
  }
  auto* w = new LoadWorker(env, info[0].As<Napi::String>().Utf8Value(), pin_dir, std::move(initial));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// "map_type:" or "prog_type:" in /proc/self/fdinfo tells what a pin holds:
// bpf_obj_get_info_by_fd would happily fill a map_info from a program fd.
bool FdInfoHas(int fd, const char* field) {
  std::ifstream in("/proc/self/fdinfo/" + std::to_string(fd));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return true;
  return false;
}

int OpenPinned(Napi::Env env, const Napi::CallbackInfo& info, const char* field, std::string* path) {
  if (info.Length() < 1 || !info[0].IsString()) {
    ThrowType(env, "expected a pin path");
    return -1;
  }
  *path = info[0].As<Napi::String>().Utf8Value();
  int fd = bpf_obj_get(path->c_str());
  if (fd < 0) {
    ThrowError(env, "bpf_obj_get", errno, *path);
    return -1;
  }
  if (!FdInfoHas(fd, field)) {
    close(fd);
    ThrowError(env, "bpf_obj_get", EINVAL, *path + " is not a " + (field[0] == 'm' ? "map" : "program"));
    return -1;
  }
  return fd;
}

std::string Basename(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

Napi::Value OpenPinnedMap(const Napi::CallbackInfo& info) {
  std::string path;
  int fd = OpenPinned(info.Env(), info, "map_type:", &path);
  if (fd < 0) return info.Env().Undefined();
  return BpfMap::New(info.Env(), fd, Basename(path));
}

Napi::Value OpenPinnedProgram(const Napi::CallbackInfo& info) {
  std::string path;
  int fd = OpenPinned(info.Env(), info, "prog_type:", &path);
  if (fd < 0) return info.Env().Undefined();
  return BpfProgram::New(info.Env(), fd, Basename(path));
}

Napi::Value NumPossibleCpus(const Napi::CallbackInfo& info) {
  int n = libbpf_num_possible_cpus();
  if (n < 0) {
    ThrowError(info.Env(), "libbpf_num_possible_cpus", -n);
    return info.Env().Undefined();
  }
  return Napi::Number::New(info.Env(), n);
}

Napi::Value LibbpfVersion(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), libbpf_version_string());
}

}  // namespace

// ---- BpfObject ---------------------------------------------------------------

Napi::Function BpfObject::Define(Napi::Env env) {
  return DefineClass(env, "BpfObject",
                     {InstanceMethod("programs", &BpfObject::Programs), InstanceMethod("maps", &BpfObject::Maps),
                      InstanceMethod("program", &BpfObject::Program), InstanceMethod("map", &BpfObject::Map),
                      InstanceMethod("btfStruct", &BpfObject::BtfStruct), InstanceMethod("close", &BpfObject::Close)});
}

Napi::Object BpfObject::New(Napi::Env env, struct bpf_object* obj, const std::string& path) {
  Napi::Object o = env.GetInstanceData<AddonData>()->object_ctor.New({});
  BpfObject::Unwrap(o)->obj_ = obj;
  o.Set("path", Napi::String::New(env, path));
  return o;
}

BpfObject::BpfObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfObject>(info) {}

BpfObject::~BpfObject() {
  if (obj_) bpf_object__close(obj_);  // backstop only: callers close()
}

bool BpfObject::Open(Napi::Env env) {
  if (obj_) return true;
  ThrowError(env, "BpfObject", EBADF, "object is closed");
  return false;
}

Napi::Value BpfObject::Programs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Open(env)) return env.Undefined();
  Napi::Array out = Napi::Array::New(env);
  struct bpf_program* prog;
  uint32_t i = 0;
  bpf_object__for_each_program(prog, obj_) out.Set(i++, Napi::String::New(env, bpf_program__name(prog)));
  return out;
}

Napi::Value BpfObject::Maps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Open(env)) return env.Undefined();
  Napi::Array out = Napi::Array::New(env);
  struct bpf_map* map;
  uint32_t i = 0;
  bpf_object__for_each_map(map, obj_) {
    if (!bpf_map__is_internal(map)) out.Set(i++, Napi::String::New(env, bpf_map__name(map)));
  }
  return out;
}

Napi::Value BpfObject::Program(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Open(env)) return env.Undefined();
  if (info.Length() < 1 || !info[0].IsString()) {
    ThrowType(env, "program(name: string)");
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  struct bpf_program* prog = bpf_object__find_program_by_name(obj_, name.c_str());
  if (!prog || bpf_program__fd(prog) < 0) {
    ThrowError(env, "bpf_object__find_program_by_name", ENOENT, name);
    return env.Undefined();
  }
  int fd = fcntl(bpf_program__fd(prog), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) {
    ThrowError(env, "dup", errno, name);
    return env.Undefined();
  }
  return BpfProgram::New(env, fd, name);
}

Napi::Value BpfObject::Map(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Open(env)) return env.Undefined();
  if (info.Length() < 1 || !info[0].IsString()) {
    ThrowType(env, "map(name: string)");
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  struct bpf_map* map = bpf_object__find_map_by_name(obj_, name.c_str());
  if (!map || bpf_map__fd(map) < 0) {
    ThrowError(env, "bpf_object__find_map_by_name", ENOENT, name);
    return env.Undefined();
  }
  int fd = fcntl(bpf_map__fd(map), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) {
    ThrowError(env, "dup", errno, name);
    return env.Undefined();
  }
  return BpfMap::New(env, fd, name);
}

// btfStruct(name) -> { size, members: [{ name, offset, size }] } | null, from
// the object's BTF: what the compiler actually laid out.
Napi::Value BpfObject::BtfStruct(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Open(env)) return env.Undefined();
  if (info.Length() < 1 || !info[0].IsString()) {
    ThrowType(env, "btfStruct(name: string)");
    return env.Undefined();
  }
  struct btf* btf = bpf_object__btf(obj_);
  if (!btf) return env.Null();
  std::string name = info[0].As<Napi::String>().Utf8Value();
  int id = btf__find_by_name_kind(btf, name.c_str(), BTF_KIND_STRUCT);
  if (id < 0) return env.Null();
  const struct btf_type* t = btf__type_by_id(btf, id);
  Napi::Object out = Napi::Object::New(env);
  out.Set("size", Napi::Number::New(env, t->size));
  Napi::Array members = Napi::Array::New(env);
  const struct btf_member* m = btf_members(t);
  for (uint16_t i = 0; i < btf_vlen(t); i++, m++) {
    Napi::Object mo = Napi::Object::New(env);
    mo.Set("name", Napi::String::New(env, btf__name_by_offset(btf, m->name_off)));
    mo.Set("offset", Napi::Number::New(env, btf_member_bit_offset(t, i) / 8));
    mo.Set("size", Napi::Number::New(env, static_cast<double>(btf__resolve_size(btf, m->type))));
    members.Set(i, mo);
  }
  out.Set("members", members);
  return out;
}

Napi::Value BpfObject::Close(const Napi::CallbackInfo& info) {
  if (obj_) {
    bpf_object__close(obj_);
    malloc_trim(0);  // the object's ELF and BTF copies: return them to the OS (see LoadWorker)
  }
  obj_ = nullptr;
  return info.Env().Undefined();
}

Napi::Object InitBpf(Napi::Env env, Napi::Object exports) {
  InstallLibbpfPrint();
  // A fixed mmap threshold: glibc otherwise raises it after the first big
  // free (up to 32 MiB), so libbpf's multi-MB BTF buffers land in the pool
  // threads' arenas and stay there as RSS of a long-running daemon.
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  auto* data = new AddonData();
  data->object_ctor = Napi::Persistent(BpfObject::Define(env));
  data->program_ctor = Napi::Persistent(BpfProgram::Define(env));
  data->map_ctor = Napi::Persistent(BpfMap::Define(env));
  env.SetInstanceData<AddonData>(data);
  exports.Set("loadObject", Napi::Function::New(env, LoadObject));
  exports.Set("openPinnedMap", Napi::Function::New(env, OpenPinnedMap));
  exports.Set("openPinnedProgram", Napi::Function::New(env, OpenPinnedProgram));
  exports.Set("numPossibleCpus", Napi::Function::New(env, NumPossibleCpus));
  exports.Set("libbpfVersion", Napi::Function::New(env, LibbpfVersion));
  return exports;
}

}  // namespace vnet
