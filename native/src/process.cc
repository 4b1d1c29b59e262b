// Process hardening: prctl(PR_SET_DUMPABLE). A non-dumpable process writes no
// core dump (keys must never reach one), cannot be ptrace-attached or have its
// memory read through /proc/PID/mem by other processes of the same user, and its
// /proc/PID files belong to root.
//
// execWithFds: replace this process with a program that inherits given fds as 3, 4, …
// (a guest's TAPs, opened by the VM launcher as root, see src/vm/launcher.ts): Node itself
// can spawn with inherited fds but never exec in place, and QEMU must be the unit's main pid.
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <string>
#include <vector>

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

// malloc_trim(0): glibc keeps freed pages of its heaps resident; after a large batch (a
// fleet's 10,000 ENIs arriving) that was ~5 MB of RSS nothing used. Returns whether any went back.
Napi::Value MallocTrim(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
}

Napi::Value ExecWithFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray() || !info[1].IsArray()) {
    ThrowTypeError(env, "execWithFds: arguments must be (argv: string[], fds: number[])");
  }
  Napi::Array argArray = info[0].As<Napi::Array>();
  Napi::Array fdArray = info[1].As<Napi::Array>();
  if (argArray.Length() == 0) ThrowTypeError(env, "execWithFds: argv is empty");
  std::vector<std::string> args;
  for (uint32_t i = 0; i < argArray.Length(); i++) {
    Napi::Value v = argArray.Get(i);
    if (!v.IsString()) ThrowTypeError(env, "execWithFds: argv must hold strings");
    args.push_back(v.As<Napi::String>().Utf8Value());
  }
  std::vector<int> fds;
  for (uint32_t i = 0; i < fdArray.Length(); i++) {
    Napi::Value v = fdArray.Get(i);
    if (!v.IsNumber()) ThrowTypeError(env, "execWithFds: fds must be numbers");
    fds.push_back(v.As<Napi::Number>().Int32Value());
  }
  // First above the target range (so no dup2 below overwrites a source), then into place:
  // dup2 leaves the targets without FD_CLOEXEC, everything Node opened keeps it.
  const int first = 3;
  const int above = first + static_cast<int>(fds.size());
  std::vector<int> high;
  for (int fd : fds) {
    int h = fcntl(fd, F_DUPFD_CLOEXEC, above);
    if (h < 0) ThrowErrno(env, "execWithFds: fcntl(F_DUPFD_CLOEXEC)", errno, "fcntl");
    high.push_back(h);
  }
  for (size_t i = 0; i < high.size(); i++) {
    if (dup2(high[i], first + static_cast<int>(i)) < 0) ThrowErrno(env, "execWithFds: dup2", errno, "dup2");
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  execvp(argv[0], argv.data());
  ThrowErrno(env, "execWithFds: execvp " + args[0], errno, "execvp");
}

}  // namespace

void InitProcess(Napi::Env env, Napi::Object exports) {
  exports.Set("setDumpable", Napi::Function::New(env, SetDumpable, "setDumpable"));
  exports.Set("isDumpable", Napi::Function::New(env, IsDumpable, "isDumpable"));
  exports.Set("mallocTrim", Napi::Function::New(env, MallocTrim, "mallocTrim"));
  exports.Set("execWithFds", Napi::Function::New(env, ExecWithFds, "execWithFds"));
}

}  // namespace nitride
