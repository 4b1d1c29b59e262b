// Sealed memory files: sealedMemfd(name, bytes) makes an anonymous memory file
// (memfd_create, MFD_ALLOW_SEALING) holding `bytes` and seals it against any
// change (F_SEAL_WRITE/SHRINK/GROW, then F_SEAL_SEAL so no seal can be
// removed or added); fileSeals(fd) reads the seals of an fd (F_GET_SEALS).
// For state handed over through systemd's fd store: it lives in RAM only and
// whoever gets the fd back can check that nobody could have changed it.
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>

#include "nitride.h"

namespace nitride {

namespace {

constexpr int kAllSeals = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

Napi::Value SealedMemfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowTypeError(env, "sealedMemfd: name must be a string");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  // memfd names are at most 249 bytes (the kernel prefixes "memfd:").
  if (name.empty() || name.size() > 249 || name.find('\0') != std::string::npos) {
    ThrowInvalidValue(env, "sealedMemfd: name must be 1-249 bytes without NUL");
  }
  uint8_t* data;
  size_t len;
  BytesArg(env, info[1], "sealedMemfd", "bytes", &data, &len);
  FdGuard fd(memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (fd.get() < 0) ThrowErrno(env, "memfd_create " + name, errno, "memfd_create");
  for (size_t off = 0; off < len;) {
    ssize_t n = pwrite(fd.get(), data + off, len - off, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) ThrowErrno(env, "sealedMemfd: write " + name, n < 0 ? errno : EIO, "pwrite");
    off += static_cast<size_t>(n);
  }
  if (fcntl(fd.get(), F_ADD_SEALS, kAllSeals) < 0) {
    ThrowErrno(env, "sealedMemfd: seal " + name, errno, "fcntl");
  }
  return Napi::Number::New(env, fd.release());
}

// fileSeals(fd) => { write, shrink, grow, seal } (EINVAL: not a sealable file).
Napi::Value FileSeals(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "fileSeals");
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0) ThrowErrno(env, "fcntl F_GET_SEALS fd " + std::to_string(fd), errno, "fcntl");
  Napi::Object result = Napi::Object::New(env);
  result.Set("write", Napi::Boolean::New(env, (seals & F_SEAL_WRITE) != 0));
  result.Set("shrink", Napi::Boolean::New(env, (seals & F_SEAL_SHRINK) != 0));
  result.Set("grow", Napi::Boolean::New(env, (seals & F_SEAL_GROW) != 0));
  result.Set("seal", Napi::Boolean::New(env, (seals & F_SEAL_SEAL) != 0));
  return result;
}

}  // namespace

void InitMemfd(Napi::Env env, Napi::Object exports) {
  exports.Set("sealedMemfd", Napi::Function::New(env, SealedMemfd, "sealedMemfd"));
  exports.Set("fileSeals", Napi::Function::New(env, FileSeals, "fileSeals"));
}

}  // namespace nitride
