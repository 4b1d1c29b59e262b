// Process hardening: prctl(PR_SET_DUMPABLE). A non-dumpable process writes no
// core dump (keys must never reach one), cannot be ptrace-attached or have its
// memory read through /proc/PID/mem by other processes of the same user, and its
// /proc/PID files belong to root.
#include <errno.h>
#include <sys/prctl.h>

#include "nitride.h"

namespace nitride {

namespace {

Napi::Value SetDumpable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBoolean()) {
    ThrowTypeError(env, "setDumpable: argument must be a boolean");
  }
  if (prctl(PR_SET_DUMPABLE, info[0].As<Napi::Boolean>().Value() ? 1 : 0, 0, 0, 0) != 0) {
    ThrowErrno(env, "setDumpable: prctl(PR_SET_DUMPABLE)", errno, "prctl");
  }
  return env.Undefined();
}

Napi::Value IsDumpable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int r = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
  if (r < 0) {
    ThrowErrno(env, "isDumpable: prctl(PR_GET_DUMPABLE)", errno, "prctl");
  }
  return Napi::Boolean::New(env, r != 0);
}

}  // namespace

void InitProcess(Napi::Env env, Napi::Object exports) {
  exports.Set("setDumpable", Napi::Function::New(env, SetDumpable, "setDumpable"));
  exports.Set("isDumpable", Napi::Function::New(env, IsDumpable, "isDumpable"));
}

}  // namespace nitride
