// Errors, libbpf log capture, netns switching and the Promise worker base.
#include "bpf_common.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mutex>

namespace vnet {

Napi::Error MakeError(Napi::Env env, const std::string& op, int err, const std::string& detail) {
  std::string message = op + ": " + strerror(err);
  if (!detail.empty()) message += " (" + detail + ")";
  Napi::Error e = Napi::Error::New(env, message);
  const char* name = strerrorname_np(err);
  e.Set("code", Napi::String::New(env, name ? name : "EUNKNOWN"));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("op", Napi::String::New(env, op));
  return e;
}

void ThrowError(Napi::Env env, const std::string& op, int err, const std::string& detail) {
  MakeError(env, op, err, detail).ThrowAsJavaScriptException();
}

void ThrowType(Napi::Env env, const std::string& message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
}

// ---- libbpf log capture -------------------------------------------------

static thread_local std::string* g_log_sink = nullptr;

static int LibbpfPrint(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (!g_log_sink || level == LIBBPF_DEBUG) return 0;  // debug is per-relocation noise
  char buf[1024];
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(buf, sizeof(buf), fmt, copy);
  va_end(copy);
  if (n < 0) return 0;
  if (static_cast<size_t>(n) < sizeof(buf)) {
    g_log_sink->append(buf, n);
  } else {  // verifier logs are long: format again into a buffer that fits
    std::string big(static_cast<size_t>(n) + 1, '\0');
    vsnprintf(&big[0], big.size(), fmt, args);
    g_log_sink->append(big.data(), n);
  }
  return n;
}

void InstallLibbpfPrint() {
  static std::once_flag once;
  std::call_once(once, [] { libbpf_set_print(LibbpfPrint); });
}

LogCapture::LogCapture(std::string* sink) : prev_(g_log_sink) { g_log_sink = sink; }
LogCapture::~LogCapture() { g_log_sink = prev_; }

std::string ExtractVerifierLog(const std::string& log) {
  static const std::string kBegin = "-- BEGIN PROG LOAD LOG --\n";
  static const std::string kEnd = "-- END PROG LOAD LOG --";
  size_t begin = log.find(kBegin);
  if (begin == std::string::npos) return "";
  begin += kBegin.size();
  size_t end = log.find(kEnd, begin);
  return log.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

// ---- netns ---------------------------------------------------------------

int NetnsGuard::Enter(const std::string& path, const char** failed_op) {
  if (path.empty()) return 0;
  orig_fd_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (orig_fd_ < 0) {
    *failed_op = "open(/proc/thread-self/ns/net)";
    return errno;
  }
  int target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    *failed_op = "open(netns)";
    return errno;
  }
  int rc = setns(target, CLONE_NEWNET);
  int err = errno;
  close(target);
  if (rc != 0) {
    *failed_op = "setns";
    return err;
  }
  entered_ = true;
  return 0;
}

NetnsGuard::~NetnsGuard() {
  if (entered_ && setns(orig_fd_, CLONE_NEWNET) != 0) {
    fprintf(stderr, "vnet-native: cannot restore the worker thread's netns: %s; aborting\n", strerror(errno));
    abort();
  }
  if (orig_fd_ >= 0) close(orig_fd_);
}

// ---- workers ---------------------------------------------------------------

PromiseWorker::PromiseWorker(Napi::Env env) : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {}

void PromiseWorker::Fail(const std::string& op, int err, const std::string& detail) {
  failed_ = true;
  op_ = op;
  errno_ = err;
  detail_ = detail;
}

void PromiseWorker::OnOK() {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  if (failed_) {
    Napi::Error e = MakeError(env, op_, errno_, detail_);
    Decorate(e);
    deferred_.Reject(e.Value());
    return;
  }
  Napi::Value result = Result(env);
  if (env.IsExceptionPending()) {
    deferred_.Reject(env.GetAndClearPendingException().Value());
    return;
  }
  deferred_.Resolve(result);
}

void PromiseWorker::OnError(const Napi::Error& e) { deferred_.Reject(e.Value()); }

bool CopyBuffer(Napi::Env env, Napi::Value value, size_t size, const char* what, std::vector<uint8_t>* out) {
  if (!value.IsBuffer()) {
    ThrowType(env, std::string(what) + " must be a Buffer");
    return false;
  }
  auto buf = value.As<Napi::Buffer<uint8_t>>();
  if (size != 0 && buf.Length() != size) {
    ThrowType(env, std::string(what) + " must be " + std::to_string(size) + " bytes, got " +
                       std::to_string(buf.Length()));
    return false;
  }
  out->assign(buf.Data(), buf.Data() + buf.Length());
  return true;
}

}  // namespace vnet
