// Listening sockets that outlive the process: for the systemd fd store (live update).
//
// unixListen(path, backlog) binds and listens on a Unix stream socket and returns
// its fd. Node's own net.Server binds through libuv, which unlinks the path when
// the server closes; a socket bound here and served with server.listen({ fd })
// keeps its path when the old process closes its copy, so the copy systemd holds
// keeps accepting (connections wait in the backlog) while the new process starts.
//
// socketAddress(fd) says what an inherited socket is bound to, so a socket from
// a previous run is reused only if it matches the configuration.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "nitride.h"

namespace nitride {

namespace {

Napi::Value UnixListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) {
    ThrowTypeError(env, "unixListen: path must be a string");
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int backlog = info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 511;
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    ThrowErrno(env, "unixListen: " + path, ENAMETOOLONG, "bind");
  }
  memcpy(addr.sun_path, path.data(), path.size());
  FdGuard fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    ThrowErrno(env, "unixListen: socket", errno, "socket");
  }
  socklen_t len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + path.size() + 1);
  if (bind(fd.get(), reinterpret_cast<struct sockaddr*>(&addr), len) != 0) {
    ThrowErrno(env, "unixListen: bind " + path, errno, "bind");
  }
  if (listen(fd.get(), backlog) != 0) {
    ThrowErrno(env, "unixListen: listen " + path, errno, "listen");
  }
  return Napi::Number::New(env, fd.release());
}

Napi::Value SocketAddress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "socketAddress");
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  memset(&ss, 0, sizeof ss);
  if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&ss), &len) != 0) {
    ThrowErrno(env, "socketAddress: getsockname", errno, "getsockname");
  }
  Napi::Object out = Napi::Object::New(env);
  if (ss.ss_family == AF_UNIX) {
    auto* un = reinterpret_cast<struct sockaddr_un*>(&ss);
    size_t n = len > offsetof(struct sockaddr_un, sun_path) ? len - offsetof(struct sockaddr_un, sun_path) : 0;
    out.Set("family", "unix");
    out.Set("path", std::string(un->sun_path, strnlen(un->sun_path, n)));
  } else if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
    char host[INET6_ADDRSTRLEN] = {0};
    int port;
    if (ss.ss_family == AF_INET) {
      auto* in = reinterpret_cast<struct sockaddr_in*>(&ss);
      inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
      port = ntohs(in->sin_port);
    } else {
      auto* in6 = reinterpret_cast<struct sockaddr_in6*>(&ss);
      inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
      port = ntohs(in6->sin6_port);
    }
    out.Set("family", ss.ss_family == AF_INET ? "ipv4" : "ipv6");
    out.Set("address", std::string(host));
    out.Set("port", port);
  } else {
    out.Set("family", "other");
  }
  int type = 0;
  socklen_t tlen = sizeof type;
  int listening = 0;
  socklen_t llen = sizeof listening;
  getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen);
  getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &llen);
  out.Set("stream", type == SOCK_STREAM);
  out.Set("listening", listening != 0);
  return out;
}

}  // namespace

void InitListen(Napi::Env env, Napi::Object exports) {
  exports.Set("unixListen", Napi::Function::New(env, UnixListen, "unixListen"));
  exports.Set("socketAddress", Napi::Function::New(env, SocketAddress, "socketAddress"));
}

}  // namespace nitride
