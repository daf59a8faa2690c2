// Shared pieces of the libbpf half of the addon: error objects, the worker
// base class, libbpf log capture, netns switching, and the three ObjectWraps
// (one per kernel handle: object, program, map).
//
// Error mode: NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS. Synchronous methods throw
// a JS Error and return undefined; async ones reject their Promise. A kernel
// or libbpf failure is an Error with `code` ('EPERM', ...), `errno`, `op`;
// object loads add `libbpfLog` and, for verifier rejections, `verifierLog`.
#pragma once

#include <napi.h>
#include <bpf/libbpf.h>
#include <string>
#include <vector>

namespace vnet {

Napi::Error MakeError(Napi::Env env, const std::string& op, int err, const std::string& detail = "");
void ThrowError(Napi::Env env, const std::string& op, int err, const std::string& detail = "");
void ThrowType(Napi::Env env, const std::string& message);

// Routes libbpf's print callback to a per-thread string while alive. Loads run
// on pool threads concurrently; thread_local keeps their logs apart.
class LogCapture {
 public:
  explicit LogCapture(std::string* sink);
  ~LogCapture();
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

 private:
  std::string* prev_;
};
void InstallLibbpfPrint();
// The text between libbpf's "-- BEGIN PROG LOAD LOG --" markers, or "".
std::string ExtractVerifierLog(const std::string& libbpf_log);

// Moves the calling thread into the netns at `path` and ALWAYS moves it back
// in the destructor: libuv reuses pool threads, so a thread left in a foreign
// netns would silently run later, unrelated work there. If it cannot move
// back, the process aborts rather than keep running in the wrong netns.
class NetnsGuard {
 public:
  NetnsGuard() = default;
  ~NetnsGuard();
  NetnsGuard(const NetnsGuard&) = delete;
  NetnsGuard& operator=(const NetnsGuard&) = delete;
  // 0 on success (or empty path: stay), else errno. `failed_op` names the step.
  int Enter(const std::string& path, const char** failed_op);

 private:
  int orig_fd_ = -1;
  bool entered_ = false;
};

// AsyncWorker that settles a Promise. Execute() calls Fail() on error;
// Result() builds the resolved value on the JS thread.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env);
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Fail(const std::string& op, int err, const std::string& detail = "");
  bool Failed() const { return failed_; }
  virtual Napi::Value Result(Napi::Env env) = 0;
  virtual void Decorate(Napi::Error& /*error*/) {}

 private:
  void OnOK() override;
  void OnError(const Napi::Error& e) override;
  Napi::Promise::Deferred deferred_;
  bool failed_ = false;
  std::string op_, detail_;
  int errno_ = 0;
};

// Buffer argument helper: copies into `out`; throws and returns false if
// `value` is not a Buffer of exactly `size` bytes (size 0 = any).
bool CopyBuffer(Napi::Env env, Napi::Value value, size_t size, const char* what, std::vector<uint8_t>* out);

struct AddonData {
  Napi::FunctionReference object_ctor;
  Napi::FunctionReference program_ctor;
  Napi::FunctionReference map_ctor;
};

// A loaded bpf_object. Programs and maps handed out are dup()ed fds, so they
// outlive close() of the object.
class BpfObject : public Napi::ObjectWrap<BpfObject> {
 public:
  static Napi::Function Define(Napi::Env env);
  static Napi::Object New(Napi::Env env, struct bpf_object* obj, const std::string& path);
  explicit BpfObject(const Napi::CallbackInfo& info);
  ~BpfObject() override;

 private:
  Napi::Value Programs(const Napi::CallbackInfo& info);
  Napi::Value Maps(const Napi::CallbackInfo& info);
  Napi::Value Program(const Napi::CallbackInfo& info);
  Napi::Value Map(const Napi::CallbackInfo& info);
  Napi::Value BtfStruct(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  bool Open(Napi::Env env);
  struct bpf_object* obj_ = nullptr;
};

class BpfProgram : public Napi::ObjectWrap<BpfProgram> {
 public:
  static Napi::Function Define(Napi::Env env);
  // Takes ownership of fd.
  static Napi::Object New(Napi::Env env, int fd, const std::string& name);
  static bool Is(Napi::Env env, Napi::Value value);
  explicit BpfProgram(const Napi::CallbackInfo& info);
  ~BpfProgram() override;
  int fd() const { return fd_; }

 private:
  Napi::Value Fd(const Napi::CallbackInfo& info);
  Napi::Value Name(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Pin(const Napi::CallbackInfo& info);
  Napi::Value TestRun(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  bool Open(Napi::Env env);
  int fd_ = -1;
  std::string name_;
};

class BpfMap : public Napi::ObjectWrap<BpfMap> {
 public:
  static Napi::Function Define(Napi::Env env);
  // Takes ownership of fd.
  static Napi::Object New(Napi::Env env, int fd, const std::string& name);
  explicit BpfMap(const Napi::CallbackInfo& info);
  ~BpfMap() override;

 private:
  Napi::Value Fd(const Napi::CallbackInfo& info);
  Napi::Value Name(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Lookup(const Napi::CallbackInfo& info);
  Napi::Value Update(const Napi::CallbackInfo& info);
  Napi::Value Delete(const Napi::CallbackInfo& info);
  Napi::Value Entries(const Napi::CallbackInfo& info);
  Napi::Value DeleteBatch(const Napi::CallbackInfo& info);
  Napi::Value Pin(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  bool Open(Napi::Env env);
  size_t ValueBytes() const;  // per-CPU maps hold one 8-byte-aligned slot per possible CPU
  int fd_ = -1;
  std::string name_;
  uint32_t type_ = 0, key_size_ = 0, value_size_ = 0, max_entries_ = 0, flags_ = 0, id_ = 0;
};

Napi::Object InitBpf(Napi::Env env, Napi::Object exports);
Napi::Object InitTc(Napi::Env env, Napi::Object exports);
Napi::Object InitLayouts(Napi::Env env, Napi::Object exports);
Napi::Object InitNetlink(Napi::Env env, Napi::Object exports);

}  // namespace vnet
