// systemd readiness protocol: sdNotify(state) sends one datagram to the
// AF_UNIX socket named by $NOTIFY_SOCKET (path, or abstract name "@...").
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>

#include "nitride.h"

namespace nitride {

namespace {

Napi::Value SdNotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) {
    ThrowTypeError(env, "sdNotify: state must be a string");
  }
  std::string state = info[0].As<Napi::String>().Utf8Value();

  // node's process.env setter updates the C environment, so getenv() sees
  // changes made from JS.
  const char* env_socket = getenv("NOTIFY_SOCKET");
  if (env_socket == nullptr || env_socket[0] == '\0') {
    return Napi::Boolean::New(env, false);
  }
  std::string target(env_socket);

  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  socklen_t addr_len;
  if (target[0] == '@') {
    // Abstract namespace: leading NUL, no terminator, length is exact.
    if (target.size() > sizeof addr.sun_path) {
      ThrowErrno(env, "sdNotify: NOTIFY_SOCKET " + target, ENAMETOOLONG,
                 "sendto");
    }
    memcpy(addr.sun_path + 1, target.data() + 1, target.size() - 1);
    addr_len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) +
                                      target.size());
  } else if (target[0] == '/') {
    if (target.size() >= sizeof addr.sun_path) {
      ThrowErrno(env, "sdNotify: NOTIFY_SOCKET " + target, ENAMETOOLONG,
                 "sendto");
    }
    memcpy(addr.sun_path, target.data(), target.size());
    addr_len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) +
                                      target.size() + 1);
  } else {
    // systemd also knows "vsock:CID:PORT"; nitride has no use for it yet.
    ThrowWithCode(env,
                  "sdNotify: unsupported NOTIFY_SOCKET \"" + target +
                      "\" (expected an absolute path or @abstract name)",
                  "ERR_INVALID_ARG_VALUE");
  }

  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowErrno(env, "sdNotify: socket", errno, "socket");
  }
  ssize_t n = sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                     reinterpret_cast<struct sockaddr*>(&addr), addr_len);
  int err = errno;
  close(fd);
  if (n < 0) {
    ThrowErrno(env, "sdNotify: sendto " + target, err, "sendto");
  }
  return Napi::Boolean::New(env, true);
}

}  // namespace

void InitSdNotify(Napi::Env env, Napi::Object exports) {
  exports.Set("sdNotify", Napi::Function::New(env, SdNotify, "sdNotify"));
}

}  // namespace nitride
