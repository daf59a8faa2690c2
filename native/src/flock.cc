// flock(2) for the durable store. Node has no file locks; the store needs one
// that the kernel releases when a process dies (kill -9 leaves no stale lock).
// Blocking waits run in an AsyncWorker so the JS thread never stalls.
#include <napi.h>
#include <sys/file.h>
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

namespace {

Napi::Error ErrnoError(Napi::Env env, const char* op, int err) {
  Napi::Error e = Napi::Error::New(env, std::string(op) + ": " + strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, op));
  const char* code = err == EWOULDBLOCK ? "EWOULDBLOCK" : err == ETIMEDOUT ? "ETIMEDOUT" : err == EBADF ? "EBADF" : "EIO";
  e.Set("code", Napi::String::New(env, code));
  return e;
}

class FlockWorker : public Napi::AsyncWorker {
 public:
  FlockWorker(Napi::Env env, int fd, bool exclusive, int timeout_ms)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)),
        fd_(fd), exclusive_(exclusive), timeout_ms_(timeout_ms) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    // Poll with LOCK_NB: a blocking flock cannot be given a timeout, and a
    // worker thread stuck forever would pin a libuv pool slot.
    const int op = (exclusive_ ? LOCK_EX : LOCK_SH) | LOCK_NB;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long sleep_us = 200;
    for (;;) {
      if (flock(fd_, op) == 0) return;
      if (errno != EWOULDBLOCK && errno != EINTR) { err_ = errno; return; }
      clock_gettime(CLOCK_MONOTONIC, &now);
      long elapsed_ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
      if (elapsed_ms >= timeout_ms_) { err_ = ETIMEDOUT; return; }
      usleep(sleep_us);
      if (sleep_us < 5000) sleep_us *= 2;
    }
  }
  void OnOK() override {
    if (err_ != 0) deferred_.Reject(ErrnoError(Env(), "flock", err_).Value());
    else deferred_.Resolve(Env().Undefined());
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  int fd_;
  bool exclusive_;
  int timeout_ms_;
  int err_ = 0;
};

// A blocking wait on a dup of the caller's fd. The kernel queues blocked
// waiters, so under contention nobody starves the way LOCK_NB polling can.
// The worker owns the dup: if the caller gives up (closes its fd on a
// timeout), the lock, once granted, dies with the dup when the worker closes
// it, and a reused fd number can never be locked by mistake.
class FlockWaitWorker : public Napi::AsyncWorker {
 public:
  FlockWaitWorker(Napi::Env env, int dupfd, bool exclusive)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), fd_(dupfd), exclusive_(exclusive) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    int rc;
    do {
      rc = flock(fd_, exclusive_ ? LOCK_EX : LOCK_SH);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) err_ = errno;
    close(fd_);  // the lock lives on in the caller's open file description
  }
  void OnOK() override {
    if (err_ != 0) deferred_.Reject(ErrnoError(Env(), "flock", err_).Value());
    else deferred_.Resolve(Env().Undefined());
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  int fd_;
  bool exclusive_;
  int err_ = 0;
};

// flockWait(fd, exclusive) -> Promise<void>; the caller bounds the wait by closing fd.
Napi::Value FlockWait(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsBoolean()) {
    Napi::TypeError::New(env, "flockWait(fd: number, exclusive: boolean)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int dupfd = fcntl(info[0].As<Napi::Number>().Int32Value(), F_DUPFD_CLOEXEC, 0);
  if (dupfd < 0) {
    ErrnoError(env, "fcntl", errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* w = new FlockWaitWorker(env, dupfd, info[1].As<Napi::Boolean>().Value());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// flock(fd, exclusive, timeoutMs) -> Promise<void>
Napi::Value Flock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsBoolean() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "flock(fd: number, exclusive: boolean, timeoutMs: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* w = new FlockWorker(env, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Boolean>().Value(),
                            info[2].As<Napi::Number>().Int32Value());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// funlock(fd) -> void (never blocks)
Napi::Value Funlock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "funlock(fd: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (flock(info[0].As<Napi::Number>().Int32Value(), LOCK_UN) != 0) {
    ErrnoError(env, "flock", errno).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

}  // namespace

Napi::Object InitFlock(Napi::Env env, Napi::Object exports) {
  exports.Set("flock", Napi::Function::New(env, Flock));
  exports.Set("funlock", Napi::Function::New(env, Funlock));
  exports.Set("flockWait", Napi::Function::New(env, FlockWait));
  return exports;
}
