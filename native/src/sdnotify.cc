// systemd readiness protocol: sdNotify(state[, fds]) sends one datagram to the
// AF_UNIX socket named by $NOTIFY_SOCKET (path, or abstract name "@..."),
// with `fds` attached as SCM_RIGHTS (FDSTORE=1: systemd keeps them across a
// restart of the service and hands them back in LISTEN_FDS).
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "nitride.h"

namespace nitride {

namespace {

Napi::Value SdNotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) {
    ThrowTypeError(env, "sdNotify: state must be a string");
  }
  std::string state = info[0].As<Napi::String>().Utf8Value();
  std::vector<int> fds;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsArray()) {
      ThrowTypeError(env, "sdNotify: fds must be an array of file descriptors");
    }
    Napi::Array list = info[1].As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); i++) {
      Napi::Value v = list.Get(i);
      if (!v.IsNumber() || v.As<Napi::Number>().Int32Value() < 0) {
        ThrowTypeError(env, "sdNotify: fds must be an array of file descriptors");
      }
      fds.push_back(v.As<Napi::Number>().Int32Value());
    }
    // SCM_MAX_FD in the kernel.
    if (fds.size() > 253) {
      ThrowTypeError(env, "sdNotify: at most 253 file descriptors per message");
    }
  }

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
  struct iovec iov;
  iov.iov_base = const_cast<char*>(state.data());
  iov.iov_len = state.size();
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_name = &addr;
  msg.msg_namelen = addr_len;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control;
  if (!fds.empty()) {
    control.assign(CMSG_SPACE(sizeof(int) * fds.size()), 0);
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
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
