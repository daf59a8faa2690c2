// BpfMap: one map fd. Single-key operations are one syscall each and run
// synchronously; whole-map walks and batch deletes run in AsyncWorkers.
#include "bpf_common.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <unistd.h>

namespace vnet {
namespace {

bool IsPerCpu(uint32_t type) {
  return type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
         type == BPF_MAP_TYPE_LRU_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

class EntriesWorker : public PromiseWorker {
 public:
  EntriesWorker(Napi::Env env, int fd, size_t key_size, size_t value_bytes, size_t max_entries)
      : PromiseWorker(env), fd_(fd), key_size_(key_size), value_bytes_(value_bytes), max_entries_(max_entries) {}
  ~EntriesWorker() override { close(fd_); }

  void Execute() override {
    std::vector<uint8_t> cur(key_size_), next(key_size_), value(value_bytes_);
    const void* prev = nullptr;
    // Bounded: a hash walk restarts from the first key if the current one is
    // deleted under it, so never trust the walk to end by itself.
    for (size_t guard = 2 * max_entries_ + 16; guard > 0; guard--) {
      if (bpf_map_get_next_key(fd_, prev, next.data()) != 0) {
        if (errno != ENOENT) Fail("bpf_map_get_next_key", errno);
        return;
      }
      if (bpf_map_lookup_elem(fd_, next.data(), value.data()) == 0) {
        keys_.insert(keys_.end(), next.begin(), next.end());
        values_.insert(values_.end(), value.begin(), value.end());
      } else if (errno != ENOENT) {
        return Fail("bpf_map_lookup_elem", errno);
      }
      cur.swap(next);
      prev = cur.data();
    }
  }

  Napi::Value Result(Napi::Env env) override {
    size_t n = key_size_ ? keys_.size() / key_size_ : 0;
    Napi::Array out = Napi::Array::New(env, n);
    for (size_t i = 0; i < n; i++) {
      Napi::Array pair = Napi::Array::New(env, 2);
      pair.Set(0u, Napi::Buffer<uint8_t>::Copy(env, keys_.data() + i * key_size_, key_size_));
      pair.Set(1u, Napi::Buffer<uint8_t>::Copy(env, values_.data() + i * value_bytes_, value_bytes_));
      out.Set(i, pair);
    }
    return out;
  }

 private:
  int fd_;
  size_t key_size_, value_bytes_, max_entries_;
  std::vector<uint8_t> keys_, values_;
};

class DeleteBatchWorker : public PromiseWorker {
 public:
  DeleteBatchWorker(Napi::Env env, int fd, size_t key_size, std::vector<uint8_t> keys)
      : PromiseWorker(env), fd_(fd), key_size_(key_size), keys_(std::move(keys)) {}
  ~DeleteBatchWorker() override { close(fd_); }

  void Execute() override {
    for (size_t off = 0; off + key_size_ <= keys_.size(); off += key_size_) {
      if (bpf_map_delete_elem(fd_, keys_.data() + off) == 0) deleted_++;
      else if (errno != ENOENT) return Fail("bpf_map_delete_elem", errno);
    }
  }
  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, static_cast<double>(deleted_)); }

 private:
  int fd_;
  size_t key_size_;
  std::vector<uint8_t> keys_;
  size_t deleted_ = 0;
};

}  // namespace

Napi::Function BpfMap::Define(Napi::Env env) {
  return DefineClass(env, "BpfMap",
                     {InstanceAccessor("fd", &BpfMap::Fd, nullptr), InstanceAccessor("name", &BpfMap::Name, nullptr),
                      InstanceMethod("info", &BpfMap::Info), InstanceMethod("lookup", &BpfMap::Lookup),
                      InstanceMethod("update", &BpfMap::Update), InstanceMethod("delete", &BpfMap::Delete),
                      InstanceMethod("entries", &BpfMap::Entries), InstanceMethod("deleteBatch", &BpfMap::DeleteBatch),
                      InstanceMethod("pin", &BpfMap::Pin), InstanceMethod("close", &BpfMap::Close)});
}

Napi::Object BpfMap::New(Napi::Env env, int fd, const std::string& name) {
  Napi::Object o = env.GetInstanceData<AddonData>()->map_ctor.New({});
  BpfMap* m = BpfMap::Unwrap(o);
  m->fd_ = fd;
  m->name_ = name;
  struct bpf_map_info mi = {};
  __u32 len = sizeof(mi);
  if (bpf_obj_get_info_by_fd(fd, &mi, &len) != 0) {
    ThrowError(env, "bpf_obj_get_info_by_fd", errno, name);
    return o;
  }
  m->type_ = mi.type;
  m->key_size_ = mi.key_size;
  m->value_size_ = mi.value_size;
  m->max_entries_ = mi.max_entries;
  m->flags_ = mi.map_flags;
  m->id_ = mi.id;
  return o;
}

BpfMap::BpfMap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfMap>(info) {}

BpfMap::~BpfMap() {
  if (fd_ >= 0) close(fd_);
}

bool BpfMap::Open(Napi::Env env) {
  if (fd_ >= 0) return true;
  ThrowError(env, "BpfMap", EBADF, name_ + " is closed");
  return false;
}

size_t BpfMap::ValueBytes() const {
  if (!IsPerCpu(type_)) return value_size_;
  return ((value_size_ + 7) / 8) * 8 * static_cast<size_t>(libbpf_num_possible_cpus());
}

Napi::Value BpfMap::Fd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }
Napi::Value BpfMap::Name(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), name_); }

// info() -> { name, id, type, keySize, valueSize, maxEntries, flags, perCpu }
Napi::Value BpfMap::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Open(env)) return env.Undefined();
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", Napi::String::New(env, name_));
  o.Set("id", Napi::Number::New(env, id_));
  o.Set("type", Napi::Number::New(env, type_));
  o.Set("keySize", Napi::Number::New(env, key_size_));
  o.Set("valueSize", Napi::Number::New(env, value_size_));
  o.Set("maxEntries", Napi::Number::New(env, max_entries_));
  o.Set("flags", Napi::Number::New(env, flags_));
  o.Set("perCpu", Napi::Boolean::New(env, IsPerCpu(type_)));
  return o;
}

// lookup(key) -> Buffer | null (per-CPU maps: one slot per possible CPU)
Napi::Value BpfMap::Lookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Open(env)) return env.Undefined();
  std::vector<uint8_t> key;
  if (!CopyBuffer(env, info[0], key_size_, "key", &key)) return env.Undefined();
  std::vector<uint8_t> value(ValueBytes());
  if (bpf_map_lookup_elem(fd_, key.data(), value.data()) != 0) {
    if (errno == ENOENT) return env.Null();
    ThrowError(env, "bpf_map_lookup_elem", errno, name_);
    return env.Undefined();
  }
  return Napi::Buffer<uint8_t>::Copy(env, value.data(), value.size());
}

// update(key, value, flags = BPF_ANY)
Napi::Value BpfMap::Update(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Open(env)) return env.Undefined();
  std::vector<uint8_t> key, value;
  if (!CopyBuffer(env, info[0], key_size_, "key", &key) || !CopyBuffer(env, info[1], ValueBytes(), "value", &value))
    return env.Undefined();
  uint64_t flags = info.Length() > 2 && info[2].IsNumber() ? static_cast<uint64_t>(info[2].As<Napi::Number>().Int64Value()) : static_cast<uint64_t>(BPF_ANY);
  if (bpf_map_update_elem(fd_, key.data(), value.data(), flags) != 0)
    ThrowError(env, "bpf_map_update_elem", errno, name_);
  return env.Undefined();
}

// delete(key) -> boolean (false: no such key)
Napi::Value BpfMap::Delete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Open(env)) return env.Undefined();
  std::vector<uint8_t> key;
  if (!CopyBuffer(env, info[0], key_size_, "key", &key)) return env.Undefined();
  if (bpf_map_delete_elem(fd_, key.data()) != 0) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowError(env, "bpf_map_delete_elem", errno, name_);
    return env.Undefined();
  }
  return Napi::Boolean::New(env, true);
}

// entries() -> Promise<Array<[Buffer, Buffer]>>
Napi::Value BpfMap::Entries(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Open(env)) return env.Undefined();
  int fd = fcntl(fd_, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) {
    ThrowError(env, "dup", errno, name_);
    return env.Undefined();
  }
  auto* w = new EntriesWorker(env, fd, key_size_, ValueBytes(), max_entries_);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// deleteBatch(keys: Buffer[]) -> Promise<number deleted>
Napi::Value BpfMap::DeleteBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Open(env)) return env.Undefined();
  if (info.Length() < 1 || !info[0].IsArray()) {
    ThrowType(env, "deleteBatch(keys: Buffer[])");
    return env.Undefined();
  }
  Napi::Array arr = info[0].As<Napi::Array>();
  std::vector<uint8_t> keys, one;
  keys.reserve(arr.Length() * key_size_);
  for (uint32_t i = 0; i < arr.Length(); i++) {
    if (!CopyBuffer(env, arr.Get(i), key_size_, "key", &one)) return env.Undefined();
    keys.insert(keys.end(), one.begin(), one.end());
  }
  int fd = fcntl(fd_, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) {
    ThrowError(env, "dup", errno, name_);
    return env.Undefined();
  }
  auto* w = new DeleteBatchWorker(env, fd, key_size_, std::move(keys));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value BpfMap::Pin(const Napi::CallbackInfo& info) {
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

Napi::Value BpfMap::Close(const Napi::CallbackInfo& info) {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  return info.Env().Undefined();
}

}  // namespace vnet
