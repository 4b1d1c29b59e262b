// TAP devices: tapOpen, tapSetPersist, closeFd.
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "nitride.h"

namespace nitride {

namespace {

constexpr const char kTunPath[] = "/dev/net/tun";


// tapOpen(name, opts?) => { fd, name }
Napi::Value TapOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) {
    ThrowTypeError(env, "tapOpen: name must be a string");
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  if (name.find('\0') != std::string::npos) {
    ThrowInvalidValue(env, "tapOpen: interface name contains a NUL byte");
  }
  if (name.size() >= IFNAMSIZ) {
    ThrowInvalidValue(env, "tapOpen: interface name \"" + name + "\" is " +
                               std::to_string(name.size()) +
                               " bytes long; Linux allows at most " +
                               std::to_string(IFNAMSIZ - 1));
  }

  bool vnet_hdr = false, multi_queue = false, persist = false;
  bool have_persist = false, have_owner = false, have_group = false;
  uint64_t owner = 0, group = 0;
  if (!info[1].IsUndefined() && !info[1].IsNull()) {
    if (!info[1].IsObject()) {
      ThrowTypeError(env, "tapOpen: opts must be an object");
    }
    Napi::Object opts = info[1].As<Napi::Object>();
    OptionalBool(opts, "vnetHdr", "tapOpen", &vnet_hdr);
    OptionalBool(opts, "multiQueue", "tapOpen", &multi_queue);
    have_persist = OptionalBool(opts, "persist", "tapOpen", &persist);
    // (uid_t)-1 means "no owner" to the kernel, so it is not accepted here.
    have_owner = OptionalUint(opts, "owner", UINT32_MAX - 1, "tapOpen", &owner);
    have_group = OptionalUint(opts, "group", UINT32_MAX - 1, "tapOpen", &group);
  }

  const std::string shown = name.empty() ? std::string("(auto)") : name;

  FdGuard fd(open(kTunPath, O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) {
    ThrowErrno(env, std::string("open ") + kTunPath, errno, "open");
  }

  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  if (vnet_hdr) ifr.ifr_flags |= IFF_VNET_HDR;
  if (multi_queue) ifr.ifr_flags |= IFF_MULTI_QUEUE;
  memcpy(ifr.ifr_name, name.data(), name.size());  // NUL-padded by memset

  if (ioctl(fd.get(), TUNSETIFF, &ifr) < 0) {
    ThrowErrno(env, "TUNSETIFF " + shown, errno, "ioctl");
  }
  // The kernel wrote back the real name (expands "%d", or picks "tapN").
  std::string real_name(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ));

  if (have_owner &&
      ioctl(fd.get(), TUNSETOWNER, static_cast<unsigned long>(owner)) < 0) {
    ThrowErrno(env, "TUNSETOWNER " + real_name, errno, "ioctl");
  }
  if (have_group &&
      ioctl(fd.get(), TUNSETGROUP, static_cast<unsigned long>(group)) < 0) {
    ThrowErrno(env, "TUNSETGROUP " + real_name, errno, "ioctl");
  }
  // Last, so that a failure above leaves no new persistent device behind.
  if (have_persist &&
      ioctl(fd.get(), TUNSETPERSIST, persist ? 1UL : 0UL) < 0) {
    ThrowErrno(env, "TUNSETPERSIST " + real_name, errno, "ioctl");
  }

  Napi::Object result = Napi::Object::New(env);
  result.Set("fd", Napi::Number::New(env, fd.release()));
  result.Set("name", Napi::String::New(env, real_name));
  return result;
}

// tapSetPersist(fd, persist): void
Napi::Value TapSetPersist(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "tapSetPersist");
  if (!info[1].IsBoolean()) {
    ThrowTypeError(env, "tapSetPersist: persist must be a boolean");
  }
  bool persist = info[1].As<Napi::Boolean>().Value();
  if (ioctl(fd, TUNSETPERSIST, persist ? 1UL : 0UL) < 0) {
    ThrowErrno(env, "TUNSETPERSIST fd " + std::to_string(fd), errno, "ioctl");
  }
  return env.Undefined();
}

// closeFd(fd): void
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "closeFd");
  // On Linux the descriptor is released even when close() reports EINTR, and
  // retrying could close an unrelated, newly opened fd: treat EINTR as done.
  if (close(fd) < 0 && errno != EINTR) {
    ThrowErrno(env, "close fd " + std::to_string(fd), errno, "close");
  }
  return env.Undefined();
}

}  // namespace

void InitTap(Napi::Env env, Napi::Object exports) {
  exports.Set("tapOpen", Napi::Function::New(env, TapOpen, "tapOpen"));
  exports.Set("tapSetPersist",
              Napi::Function::New(env, TapSetPersist, "tapSetPersist"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
}

}  // namespace nitride
