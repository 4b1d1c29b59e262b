// Unix-socket peer credentials: peerCredentials(fd) via SO_PEERCRED.
#include <errno.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <string>

#include "nitride.h"

namespace nitride {

namespace {

// peerCredentials(fd) => { pid, uid, gid }
// The credentials are those the peer had when it called connect() (or
// socketpair()), as recorded by the kernel; they cannot be forged by the peer.
Napi::Value PeerCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "peerCredentials");
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
    ThrowErrno(env, "getsockopt SO_PEERCRED fd " + std::to_string(fd), errno,
               "getsockopt");
  }
  if (len != sizeof cred) {
    ThrowErrno(env, "getsockopt SO_PEERCRED fd " + std::to_string(fd), EPROTO,
               "getsockopt");
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("pid", Napi::Number::New(env, cred.pid));
  result.Set("uid", Napi::Number::New(env, cred.uid));
  result.Set("gid", Napi::Number::New(env, cred.gid));
  return result;
}

}  // namespace

void InitPeerCred(Napi::Env env, Napi::Object exports) {
  exports.Set("peerCredentials",
              Napi::Function::New(env, PeerCredentials, "peerCredentials"));
}

}  // namespace nitride
