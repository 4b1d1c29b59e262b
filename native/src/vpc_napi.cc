// VpcEngine: the JS face of the VPC data plane (vpc_engine.h). Arguments are
// validated here; the typed wrapper and its documentation are in
// src/native/addon.ts.
//
// Events for JS travel through one ThreadSafeFunction: the worker queues them
// (bounded, vpc::Engine::kMaxQueuedEvents) and makes at most one call
// outstanding; that call hands JS the whole queue as one array.
#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include <cmath>
#include <memory>
#include <cstring>
#include <string>
#include <vector>

#include "nitride.h"
#include "vpc_engine.h"

namespace nitride {

namespace {

using vpc::Engine;
using vpc::VpcError;

[[noreturn]] void Rethrow(Napi::Env env, const VpcError& e) {
  switch (e.kind) {
    case VpcError::kSystem:
      ThrowErrno(env, e.message, e.err, e.syscall ? e.syscall : "");
    case VpcError::kRange:
      ThrowRangeError(env, e.message);
    case VpcError::kClosed:
      ThrowWithCode(env, e.message, "ERR_NITRIDE_VPC_CLOSED");
    case VpcError::kInvalid:
      break;
  }
  ThrowInvalidValue(env, e.message);
}

// Runs f, turning VpcError into a JS exception.
template <typename F>
auto Guarded(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const VpcError& e) {
    Rethrow(env, e);
  }
}

uint64_t IntArg(Napi::Env env, Napi::Value v, const std::string& what, uint64_t min,
                uint64_t max) {
  if (!v.IsNumber()) ThrowTypeError(env, what + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= static_cast<double>(min)) || d > static_cast<double>(max) || std::floor(d) != d) {
    ThrowRangeError(env, what + " must be an integer in [" + std::to_string(min) + ", " +
                             std::to_string(max) + "], got " + v.ToString().Utf8Value());
  }
  return static_cast<uint64_t>(d);
}

uint32_t IdArg(Napi::Env env, Napi::Value v, const std::string& what) {
  return static_cast<uint32_t>(IntArg(env, v, what, 0, 0xffffffffu));
}

std::string StringArg(Napi::Env env, Napi::Value v, const std::string& what) {
  if (!v.IsString()) ThrowTypeError(env, what + " must be a string");
  std::string s = v.As<Napi::String>().Utf8Value();
  if (s.find('\0') != std::string::npos) ThrowInvalidValue(env, what + " contains a NUL byte");
  return s;
}

Napi::Object ObjectArg(Napi::Env env, Napi::Value v, const std::string& what) {
  if (!v.IsObject()) ThrowTypeError(env, what + " must be an object");
  return v.As<Napi::Object>();
}

bool BoolArg(Napi::Env env, Napi::Value v, const std::string& what) {
  if (!v.IsBoolean()) ThrowTypeError(env, what + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

// The shared byte-argument checks (errors.cc), for the array itself.
Napi::Uint8Array Uint8ArrayArg(Napi::Env env, Napi::Value v, const char* fn, const char* what) {
  uint8_t* data;
  size_t len;
  BytesArg(env, v, fn, what, &data, &len);
  return v.As<Napi::Uint8Array>();
}

void MacArg(Napi::Env env, Napi::Value v, const char* fn, const char* what, uint8_t mac[6]) {
  std::memcpy(mac, FixedBytesArg(env, v, fn, what, 6), 6);
}

// Largest allowance the engine takes (bits/s or packets/s): 2^53, exact in a double.
constexpr uint64_t kMaxAllowance = uint64_t{1} << 53;

// Fills cfg from opts; with `all`, every field is required (addPort),
// otherwise absent fields keep their value (updatePort).
void ReadPortConfig(Napi::Env env, Napi::Object o, const std::string& fn, bool all,
                    vpc::PortConfig* cfg) {
  Napi::Value mac = o.Get("mac");
  if (all || !mac.IsUndefined()) {
    MacArg(env, mac, fn.c_str(), "opts.mac", cfg->policy.mac);
    if (vpc::IsMulticastMac(cfg->policy.mac)) {
      ThrowInvalidValue(env, fn + ": opts.mac must be a unicast MAC address");
    }
  }
  Napi::Value ip = o.Get("ipv4");
  if (all || !ip.IsUndefined()) {
    if (ip.IsNull()) {
      cfg->policy.has_ipv4 = false;
      std::memset(cfg->policy.ipv4, 0, 4);
    } else {
      std::string s = StringArg(env, ip, fn + ": opts.ipv4");
      if (inet_pton(AF_INET, s.c_str(), cfg->policy.ipv4) != 1) {
        ThrowInvalidValue(env, fn + ": opts.ipv4 \"" + s + "\" is not an IPv4 address");
      }
      cfg->policy.has_ipv4 = true;
    }
  }
  Napi::Value sc = o.Get("sourceCheck");
  if (all || !sc.IsUndefined()) cfg->policy.source_check = BoolArg(env, sc, fn + ": opts.sourceCheck");
  Napi::Value mtu = o.Get("mtu");
  if (all || !mtu.IsUndefined()) {
    cfg->mtu = static_cast<uint32_t>(IntArg(env, mtu, fn + ": opts.mtu", vpc::kMinMtu, vpc::kMaxMtu));
  }
  // The allowances are optional even for addPort (absent: unlimited); 0 is unlimited.
  Napi::Value bw = o.Get("bandwidth");
  if (!bw.IsUndefined()) cfg->allowance.bits = static_cast<double>(IntArg(env, bw, fn + ": opts.bandwidth", 0, kMaxAllowance));
  Napi::Value pps = o.Get("pps");
  if (!pps.IsUndefined()) cfg->allowance.packets = static_cast<double>(IntArg(env, pps, fn + ": opts.pps", 0, kMaxAllowance));
  // How long an over-limit frame may wait, in µs (0: it is dropped); at most 1 s.
  Napi::Value queue = o.Get("allowanceQueueUs");
  if (!queue.IsUndefined()) cfg->allowance.queue = static_cast<double>(IntArg(env, queue, fn + ": opts.allowanceQueueUs", 0, 1000000)) * 1e-6;
}

std::string ErrName(int err) {
  char buf[64];
  uv_err_name_r(-err, buf, sizeof buf);
  return buf;
}

Napi::Value EventToJs(Napi::Env env, vpc::ControlEvent& ev) {
  Napi::Object o = Napi::Object::New(env);
  switch (ev.type) {
    case vpc::ControlEvent::kFrame:
      o.Set("type", "frame");
      o.Set("portId", Napi::Number::New(env, ev.id));
      o.Set("reason", ev.reason);
      o.Set("frame", Napi::Buffer<uint8_t>::Copy(env, ev.data.data(), ev.data.size()));
      break;
    case vpc::ControlEvent::kHandshake:
      o.Set("type", "handshake");
      o.Set("host", ev.host);
      o.Set("port", Napi::Number::New(env, ev.port));
      o.Set("data", Napi::Buffer<uint8_t>::Copy(env, ev.data.data(), ev.data.size()));
      break;
    case vpc::ControlEvent::kRekeyNeeded:
      o.Set("type", "rekey-needed");
      o.Set("peerId", Napi::Number::New(env, ev.id));
      o.Set("localIndex", Napi::Number::New(env, ev.local_index));
      o.Set("reason", ev.reason);
      break;
    case vpc::ControlEvent::kSessionActive:
      o.Set("type", "session-active");
      o.Set("peerId", Napi::Number::New(env, ev.id));
      o.Set("localIndex", Napi::Number::New(env, ev.local_index));
      break;
    case vpc::ControlEvent::kPortError:
      o.Set("type", "port-error");
      o.Set("portId", Napi::Number::New(env, ev.id));
      o.Set("code", ErrName(ev.err));
      o.Set("message", std::string(strerror(ev.err)));
      break;
  }
  return o;
}

Napi::Number N(Napi::Env env, uint64_t v) { return Napi::Number::New(env, static_cast<double>(v)); }

// Lets the ThreadSafeFunction's calls find the engine without keeping it
// alive.
struct EventSink {
  std::weak_ptr<Engine> engine;
};

// class VpcEngine { constructor(bindAddress, bindPort, pollUs, onEvents) ... }
class VpcEngineWrap : public Napi::ObjectWrap<VpcEngineWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "VpcEngine",
        {
            InstanceAccessor<&VpcEngineWrap::Port>("port"),
            InstanceAccessor<&VpcEngineWrap::Closed>("closed"),
            InstanceMethod<&VpcEngineWrap::AddPort>("addPort"),
            InstanceMethod<&VpcEngineWrap::UpdatePort>("updatePort"),
            InstanceMethod<&VpcEngineWrap::RemovePort>("removePort"),
            InstanceMethod<&VpcEngineWrap::PortFd>("portFd"),
            InstanceMethod<&VpcEngineWrap::HoldPorts>("holdPorts"),
            InstanceMethod<&VpcEngineWrap::ReleasePorts>("releasePorts"),
            InstanceMethod<&VpcEngineWrap::SetRoute>("setRoute"),
            InstanceMethod<&VpcEngineWrap::DeleteRoute>("deleteRoute"),
            InstanceMethod<&VpcEngineWrap::AddPeer>("addPeer"),
            InstanceMethod<&VpcEngineWrap::RemovePeer>("removePeer"),
            InstanceMethod<&VpcEngineWrap::SetPeerEndpoint>("setPeerEndpoint"),
            InstanceMethod<&VpcEngineWrap::SetPlaintext>("setPlaintext"),
            InstanceMethod<&VpcEngineWrap::SetSession>("setSession"),
            InstanceMethod<&VpcEngineWrap::ClearSessions>("clearSessions"),
            InstanceMethod<&VpcEngineWrap::SendKeepalive>("sendKeepalive"),
            InstanceMethod<&VpcEngineWrap::SetRekeyLimits>("setRekeyLimits"),
            InstanceMethod<&VpcEngineWrap::SendFrame>("sendFrame"),
            InstanceMethod<&VpcEngineWrap::SendUnderlay>("sendUnderlay"),
            InstanceMethod<&VpcEngineWrap::Stats>("stats"),
            InstanceMethod<&VpcEngineWrap::SetSecurity>("setSecurity"),
            InstanceMethod<&VpcEngineWrap::FlushConntrack>("flushConntrack"),
            InstanceMethod<&VpcEngineWrap::SetFlowLog>("setFlowLog"),
            InstanceMethod<&VpcEngineWrap::TakeFlowLog>("takeFlowLog"),
            InstanceMethod<&VpcEngineWrap::Conntrack>("conntrack"),
            InstanceMethod<&VpcEngineWrap::Close>("close"),
            InstanceMethod<&VpcEngineWrap::Ref>("ref"),
            InstanceMethod<&VpcEngineWrap::Unref>("unref"),
        });
  }

  explicit VpcEngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VpcEngineWrap>(info) {
    Napi::Env env = info.Env();
    const std::string addr = StringArg(env, info[0], "VpcEngine: bindAddress");
    const uint16_t port = static_cast<uint16_t>(IntArg(env, info[1], "VpcEngine: bindPort", 0, 65535));
    const uint32_t poll_us = static_cast<uint32_t>(IntArg(env, info[2], "VpcEngine: pollUs", 0, vpc::kPollMaxLimitUs));
    if (!info[3].IsFunction()) ThrowTypeError(env, "VpcEngine: onEvents must be a function");
    env_ = env;
    tsfn_ = Napi::ThreadSafeFunction::New(env, info[3].As<Napi::Function>(), "nitride-vpc-events", 0, 1);
    tsfn_active_ = true;
    auto sink = std::make_shared<EventSink>();
    Napi::ThreadSafeFunction tsfn = tsfn_;
    auto notify = [tsfn, sink]() mutable {
      tsfn.NonBlockingCall([sink](Napi::Env env, Napi::Function cb) {
        std::shared_ptr<Engine> e = sink->engine.lock();
        if (!e) return;
        std::deque<vpc::ControlEvent> events = e->TakeEvents();
        if (e->closed() || events.empty()) return;
        try {
          Napi::Array arr = Napi::Array::New(env, events.size());
          uint32_t i = 0;
          for (auto& ev : events) arr.Set(i++, EventToJs(env, ev));
          cb.Call({arr});
        } catch (const Napi::Error&) {
          // The TypeScript wrapper catches the listener's exceptions and
          // rethrows them outside this call; nothing else can throw here
          // short of allocation failure.
        }
      });
    };
    try {
      engine_ = std::make_shared<Engine>(addr, port, poll_us, notify);
      sink->engine = engine_;
      engine_->Start();
    } catch (const VpcError& e) {
      engine_.reset();
      tsfn_.Release();
      tsfn_active_ = false;
      Rethrow(env, e);
    }
    napi_add_env_cleanup_hook(env, &VpcEngineWrap::CleanupHook, this);
    hook_ = true;
  }

  ~VpcEngineWrap() override { Shutdown(); }

 private:
  static void CleanupHook(void* arg) {
    auto* self = static_cast<VpcEngineWrap*>(arg);
    self->hook_ = false;  // removed by node after running
    self->Shutdown();
  }

  // Stops the worker (joins it), closes the sockets, frees the sessions,
  // then lets the ThreadSafeFunction go. Idempotent.
  void Shutdown() {
    if (engine_) engine_->Close();
    if (tsfn_active_) {
      tsfn_active_ = false;
      tsfn_.Release();
    }
    if (hook_) {
      hook_ = false;
      napi_remove_env_cleanup_hook(env_, &VpcEngineWrap::CleanupHook, this);
    }
  }

  Engine& E(Napi::Env env, const char* fn) {
    if (!engine_ || engine_->closed()) {
      ThrowWithCode(env, std::string(fn) + ": the engine is closed", "ERR_NITRIDE_VPC_CLOSED");
    }
    return *engine_;
  }

  Napi::Value Port(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), engine_ ? engine_->port() : 0);
  }

  Napi::Value Closed(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), !engine_ || engine_->closed());
  }

  Napi::Value AddPort(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = E(env, "addPort");
    const uint32_t id = IdArg(env, info[0], "addPort: portId");
    const std::string ifname = StringArg(env, info[1], "addPort: ifname");
    vpc::PortConfig cfg;
    ReadPortConfig(env, ObjectArg(env, info[2], "addPort: opts"), "addPort", true, &cfg);
    const int fd = info.Length() > 3 && !info[3].IsUndefined() ? FdArg(info, 3, "addPort") : -1;
    Guarded(env, [&] { e.AddPort(id, ifname, cfg, fd); });
    return env.Undefined();
  }

  Napi::Value HoldPorts(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = E(env, "holdPorts");
    Guarded(env, [&] { e.HoldPorts(); });
    return env.Undefined();
  }

  Napi::Value ReleasePorts(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = E(env, "releasePorts");
    Guarded(env, [&] { e.ReleasePorts(); });
    return env.Undefined();
  }

  Napi::Value PortFd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = E(env, "portFd");
    const uint32_t id = IdArg(env, info[0], "portFd: portId");
    return Napi::Number::New(env, e.PortFd(id));
  }

  Napi::Value UpdatePort(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = E(env, "updatePort");
    const uint32_t id = IdArg(env, info[0], "updatePort: portId");
    Napi::Object o = ObjectArg(env, info[1], "updatePort: opts");
    vpc::PortConfig cfg = Guarded(env, [&] { return e.GetPortConfig(id); });
    ReadPortConfig(env, o, "updatePort", false, &cfg);
    Guarded(env, [&] { e.UpdatePort(id, cfg); });
    return env.Undefined();
  }

  Napi::Value RemovePort(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = E(env, "removePort");
    const uint32_t id = IdArg(env, info[0], "removePort: portId");
    return Napi::Boolean::New(env, Guarded(env, [&] { return e.RemovePort(id); }));
  }

  Napi::Value SetRoute(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = E(env, "setRoute");
    uint8_t mac[6];
    MacArg(env, info[0], "setRoute", "mac", mac);
    if (vpc::IsMulticastMac(mac)) {
      ThrowInvalidValue(env, "setRoute: mac must be a unicast MAC address");
    }
    Napi::Object t = ObjectArg(env, info[1], "setRoute: target");
    Napi::Value port = t.Get("port"), peer = t.Get("peer"), control = t.Get("control");
    const int given = !port.IsUndefined() + !peer.IsUndefined() + !control.IsUndefined();
    if (given != 1) {
      ThrowInvalidValue(env, "setRoute: target must be exactly one of { port }, { peer }, { control: true }");
    }
    Engine::RouteKind kind;
    uint32_t id = 0;
    if (!port.IsUndefined()) {
      kind = Engine::RouteKind::kPort;
      id = IdArg(env, port, "setRoute: target.port");
    } else if (!peer.IsUndefined()) {
      kind = Engine::RouteKind::kPeer;
      id = IdArg(env, peer, "setRoute: target.peer");
    } else {
      if (!BoolArg(env, control, "setRoute: target.control")) {
        ThrowInvalidValue(env, "setRoute: target.control must be true");
      }
      kind = Engine::RouteKind::kControl;
    }
    Guarded(env, [&] { e.SetRoute(mac, kind, id); });
    return env.Undefined();
  }

  Napi::Value DeleteRoute(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = E(env, "deleteRoute");
    uint8_t mac[6];
    MacArg(env, info[0], "deleteRoute", "mac", mac);
    return Napi::Boolean::New(env, Guarded(env, [&] { return e.DeleteRoute(mac); }));
  }

  vpc::Endpoint EndpointArg(Napi::Env env, Engine& e, Napi::Value v, const std::string& fn) {
    Napi::Object o = ObjectArg(env, v, fn + ": endpoint");
    const std::string host = StringArg(env, o.Get("host"), fn + ": endpoint.host");
    const uint16_t port = static_cast<uint16_t>(IntArg(env, o.Get("port"), fn + ": endpoint.port", 1, 65535));
    return Guarded(env, [&] { return e.ParseEndpoint(host, port); });
  }

  Napi::Value AddPeer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = E(env, "addPeer");
    const uint32_t id = IdArg(env, info[0], "addPeer: peerId");
    vpc::Endpoint ep = EndpointArg(env, e, info[1], "addPeer");
    Guarded(env, [&] { e.AddPeer(id, ep); });
    return env.Undefined();
  }

  Napi::Value RemovePeer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = E(env, "removePeer");
    const uint32_t id = IdArg(env, info[0], "removePeer: peerId");
    return Napi::Boolean::New(env, Guarded(env, [&] { return e.RemovePeer(id); }));
  }

  Napi::Value SetPeerEndpoint(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = E(env, "setPeerEndpoint");
    const uint32_t id = IdArg(env, info[0], "setPeerEndpoint: peerId");
    vpc::Endpoint ep = EndpointArg(env, e, info[1], "setPeerEndpoint");
    Guarded(env, [&] { e.SetPeerEndpoint(id, ep); });
    return env.Undefined();
  }

  Napi::Value SetPlaintext(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = E(env, "setPlaintext");
    const uint32_t id = IdArg(env, info[0], "setPlaintext: peerId");
    const bool on = BoolArg(env, info[1], "setPlaintext: enabled");
    Guarded(env, [&] { e.SetPlaintext(id, on); });
    return env.Undefined();
  }

  Napi::Value SetSession(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = E(env, "setSession");
    const uint32_t id = IdArg(env, info[0], "setSession: peerId");
    Napi::Object o = ObjectArg(env, info[1], "setSession: session");
    bool pending = false, csum_partial = false;
    if (!info[2].IsUndefined()) {
      Napi::Object opts = ObjectArg(env, info[2], "setSession: opts");
      OptionalBool(opts, "pending", "setSession", &pending);
      OptionalBool(opts, "csumPartial", "setSession", &csum_partial);
    }
    struct Keys : vpc::SessionKeys {
      ~Keys() { OPENSSL_cleanse(static_cast<vpc::SessionKeys*>(this), sizeof(vpc::SessionKeys)); }
    } keys;
    keys.local_index = IdArg(env, o.Get("localIndex"), "setSession: session.localIndex");
    keys.remote_index = IdArg(env, o.Get("remoteIndex"), "setSession: session.remoteIndex");
    const uint8_t* sk = FixedBytesArg(env, o.Get("sendKey"), "setSession", "session.sendKey", vpc::kKeyBytes);
    const uint8_t* rk = FixedBytesArg(env, o.Get("recvKey"), "setSession", "session.recvKey", vpc::kKeyBytes);
    if (CRYPTO_memcmp(sk, rk, vpc::kKeyBytes) == 0) {
      ThrowInvalidValue(env, "setSession: sendKey and recvKey must differ");
    }
    std::memcpy(keys.send_key, sk, vpc::kKeyBytes);
    std::memcpy(keys.recv_key, rk, vpc::kKeyBytes);
    Guarded(env, [&] { e.SetSession(id, keys, pending, csum_partial); });
    return env.Undefined();
  }

  Napi::Value ClearSessions(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = E(env, "clearSessions");
    const uint32_t id = IdArg(env, info[0], "clearSessions: peerId");
    Guarded(env, [&] { e.ClearSessions(id); });
    return env.Undefined();
  }

  Napi::Value SendKeepalive(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = E(env, "sendKeepalive");
    const uint32_t id = IdArg(env, info[0], "sendKeepalive: peerId");
    bool sent = false;
    Guarded(env, [&] { sent = e.SendKeepalive(id); });
    return Napi::Boolean::New(env, sent);
  }

  Napi::Value SetRekeyLimits(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = E(env, "setRekeyLimits");
    Napi::Object o = ObjectArg(env, info[0], "setRekeyLimits: limits");
    uint64_t packets = Engine::kDefaultRekeyPackets, seconds = vpc::kDefaultRekeySeconds;
    if (!o.Get("packets").IsUndefined()) {
      packets = IntArg(env, o.Get("packets"), "setRekeyLimits: packets", 1, 9007199254740991ull);
    }
    if (!o.Get("seconds").IsUndefined()) {
      seconds = IntArg(env, o.Get("seconds"), "setRekeyLimits: seconds", 1, 1u << 31);
    }
    Guarded(env, [&] { e.SetRekeyLimits(packets, seconds); });
    return env.Undefined();
  }

  Napi::Value SendFrame(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = E(env, "sendFrame");
    const uint32_t id = IdArg(env, info[0], "sendFrame: portId");
    Napi::Uint8Array f = Uint8ArrayArg(env, info[1], "sendFrame", "frame");
    Guarded(env, [&] { e.SendFrame(id, f.Data(), f.ByteLength()); });
    return env.Undefined();
  }

  Napi::Value SendUnderlay(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = E(env, "sendUnderlay");
    const std::string host = StringArg(env, info[0], "sendUnderlay: host");
    const uint16_t port = static_cast<uint16_t>(IntArg(env, info[1], "sendUnderlay: port", 1, 65535));
    Napi::Uint8Array d = Uint8ArrayArg(env, info[2], "sendUnderlay", "datagram");
    if (d.ByteLength() == 0 || d.ByteLength() > 65507) {
      ThrowRangeError(env, "sendUnderlay: datagram length must be in [1, 65507]");
    }
    vpc::Endpoint ep = Guarded(env, [&] { return e.ParseEndpoint(host, port); });
    Guarded(env, [&] { e.SendUnderlay(ep, d.Data(), d.ByteLength()); });
    return env.Undefined();
  }

  // setSecurity(portId, table: Uint8Array | null, {maxFlows, tcpEstablishedTimeout,
  //             nacl?: Uint8Array})
  Napi::Value SetSecurity(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = E(env, "setSecurity");
    const uint32_t id = IdArg(env, info[0], "setSecurity: portId");
    std::shared_ptr<const vpc::SgTable> table;
    std::shared_ptr<const vpc::NaclTable> nacl;
    vpc::CtConfig cfg{vpc::kCtDefaultMaxFlows, vpc::kCtTcpEstablishedS};
    if (info[2].IsObject() && !info[2].As<Napi::Object>().Get("nacl").IsUndefined()) {
      Napi::Object o = info[2].As<Napi::Object>();
      Napi::Uint8Array t = Uint8ArrayArg(env, o.Get("nacl"), "setSecurity", "opts.nacl");
      std::string err;
      nacl = vpc::NaclTable::Build(t.Data(), t.ByteLength(), &err);
      if (!nacl) ThrowInvalidValue(env, "setSecurity: " + err);
    }
    if (!info[1].IsNull()) {
      Napi::Uint8Array t = Uint8ArrayArg(env, info[1], "setSecurity", "table");
      std::string err;
      // The same bytes as the last table built give that table, shared (it is immutable): in a
      // fleet every local ENI of a VPC gets its default group's table, over 10,000 members ~1 MB
      // built, again on every batch of ENIs; one per port was most of a daemon's native growth.
      table = last_sg_.lock();
      if (!table || t.ByteLength() != last_sg_bytes_.size() || std::memcmp(t.Data(), last_sg_bytes_.data(), t.ByteLength()) != 0) {
        // Compiled here, on the JS thread: the worker only sees the finished table.
        table = vpc::SgTable::Build(t.Data(), t.ByteLength(), &err);
        if (!table) ThrowInvalidValue(env, "setSecurity: " + err);
        last_sg_ = table;
        last_sg_bytes_.assign(t.Data(), t.Data() + t.ByteLength());
      }
      Napi::Object o = ObjectArg(env, info[2], "setSecurity: opts");
      cfg.max_flows = static_cast<uint32_t>(IntArg(env, o.Get("maxFlows"), "setSecurity: opts.maxFlows", 1, 1u << 24));
      cfg.tcp_established_s = static_cast<uint32_t>(
          IntArg(env, o.Get("tcpEstablishedTimeout"), "setSecurity: opts.tcpEstablishedTimeout", 60, vpc::kCtTcpEstablishedS));
    }
    Guarded(env, [&] { e.SetSecurity(id, std::move(table), cfg, std::move(nacl)); });
    return env.Undefined();
  }

  // setFlowLog(portId, maxKeys): 0 turns it off.
  Napi::Value SetFlowLog(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = E(env, "setFlowLog");
    const uint32_t id = IdArg(env, info[0], "setFlowLog: portId");
    const size_t max = static_cast<size_t>(IntArg(env, info[1], "setFlowLog: maxKeys", 0, 1u << 24));
    Guarded(env, [&] { e.SetFlowLog(id, max); });
    return env.Undefined();
  }

  // takeFlowLog(portId) → {dropped, flows: [{srcaddr, dstaddr, srcport, dstport,
  // protocol, packets, bytes, start, end (Unix ms), accept}]}. The table is
  // swapped out under the lock; the objects are made after it is released.
  Napi::Value TakeFlowLog(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = E(env, "takeFlowLog");
    const uint32_t id = IdArg(env, info[0], "takeFlowLog: portId");
    vpc::FlowLogMap flows;
    uint64_t dropped = 0;
    int64_t mono = 0;
    Guarded(env, [&] { e.TakeFlowLog(id, &flows, &dropped, &mono); });
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    const int64_t to_wall = int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000 - mono;
    auto ip = [&](uint32_t a) {
      char buf[INET_ADDRSTRLEN];
      const uint32_t be = htonl(a);
      inet_ntop(AF_INET, &be, buf, sizeof buf);
      return Napi::String::New(env, buf);
    };
    Napi::Array arr = Napi::Array::New(env, flows.size());
    uint32_t i = 0;
    for (const auto& [k, c] : flows) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("srcaddr", ip(k.src));
      o.Set("dstaddr", ip(k.dst));
      o.Set("srcport", Napi::Number::New(env, k.sport));
      o.Set("dstport", Napi::Number::New(env, k.dport));
      o.Set("protocol", Napi::Number::New(env, k.proto));
      o.Set("packets", N(env, c.packets));
      o.Set("bytes", N(env, c.bytes));
      o.Set("start", Napi::Number::New(env, static_cast<double>(c.first_ms + to_wall)));
      o.Set("end", Napi::Number::New(env, static_cast<double>(c.last_ms + to_wall)));
      o.Set("accept", Napi::Boolean::New(env, k.accept != 0));
      arr.Set(i++, o);
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("dropped", N(env, dropped));
    out.Set("flows", arr);
    return out;
  }

  Napi::Value FlushConntrack(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = E(env, "flushConntrack");
    const uint32_t id = IdArg(env, info[0], "flushConntrack: portId");
    return N(env, Guarded(env, [&] { return e.FlushConntrack(id); }));
  }

  // conntrack(portId, max) → {count, max, flows: [...]}
  Napi::Value Conntrack(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = E(env, "conntrack");
    const uint32_t id = IdArg(env, info[0], "conntrack: portId");
    const size_t max = static_cast<size_t>(IntArg(env, info[1], "conntrack: max", 0, 1u << 24));
    size_t count = 0;
    uint32_t limit = 0;
    std::vector<vpc::CtFlowInfo> flows = Guarded(env, [&] { return e.ListConntrack(id, max, &count, &limit); });
    Napi::Array arr = Napi::Array::New(env, flows.size());
    auto ip = [&](uint32_t a) {
      char buf[INET_ADDRSTRLEN];
      const uint32_t be = htonl(a);
      inet_ntop(AF_INET, &be, buf, sizeof buf);
      return Napi::String::New(env, buf);
    };
    for (size_t i = 0; i < flows.size(); ++i) {
      const vpc::CtFlowInfo& f = flows[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("protocol", Napi::Number::New(env, f.proto));
      o.Set("localIp", ip(f.local_ip));
      o.Set("localPort", Napi::Number::New(env, f.local_port));
      o.Set("remoteIp", ip(f.remote_ip));
      o.Set("remotePort", Napi::Number::New(env, f.remote_port));
      o.Set("direction", f.origin == vpc::kSgDirIngress ? "ingress" : "egress");
      o.Set("state", f.state);
      o.Set("expiresIn", Napi::Number::New(env, std::ceil(static_cast<double>(f.expires_in_ms) / 1000)));
      o.Set("packetsOut", N(env, f.packets[vpc::kSgDirEgress]));
      o.Set("bytesOut", N(env, f.bytes[vpc::kSgDirEgress]));
      o.Set("packetsIn", N(env, f.packets[vpc::kSgDirIngress]));
      o.Set("bytesIn", N(env, f.bytes[vpc::kSgDirIngress]));
      arr.Set(static_cast<uint32_t>(i), o);
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("count", N(env, count));
    out.Set("max", N(env, limit));
    out.Set("flows", arr);
    return out;
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object out = Napi::Object::New(env);
    Napi::Object ports = Napi::Object::New(env);
    Napi::Object peers = Napi::Object::New(env);
    Napi::Object under = Napi::Object::New(env);
    Napi::Object worker = Napi::Object::New(env);
    if (engine_) {
      vpc::EngineStats st = engine_->Stats();
      for (auto& [id, s] : st.ports) {
        Napi::Object p = Napi::Object::New(env);
        p.Set("rxFrames", N(env, s.rx_frames));
        p.Set("rxBytes", N(env, s.rx_bytes));
        p.Set("txFrames", N(env, s.tx_frames));
        p.Set("txBytes", N(env, s.tx_bytes));
        Napi::Object d = Napi::Object::New(env);
        d.Set("spoofed", N(env, s.spoofed));
        d.Set("noRoute", N(env, s.no_route));
        d.Set("oversize", N(env, s.oversize));
        d.Set("punted", N(env, s.punted));
        d.Set("puntOverflow", N(env, s.punt_overflow));
        d.Set("filtered", N(env, s.filtered));
        d.Set("invalid", N(env, s.invalid));
        d.Set("txError", N(env, s.tx_errors));
        d.Set("queueFull", N(env, s.queue_full));
        d.Set("securityGroup", N(env, s.sg_rejected));
        d.Set("conntrackFull", N(env, s.conntrack_full));
        d.Set("networkAcl", N(env, s.nacl_rejected));
        d.Set("bwInAllowanceExceeded", N(env, s.bw_in_exceeded));
        d.Set("bwOutAllowanceExceeded", N(env, s.bw_out_exceeded));
        d.Set("ppsAllowanceExceeded", N(env, s.pps_exceeded));
        p.Set("drops", d);
        Napi::Object ct = Napi::Object::New(env);
        ct.Set("flows", N(env, s.conntrack_flows));
        ct.Set("max", N(env, s.conntrack_max));
        p.Set("conntrack", ct);
        ports.Set(Napi::Number::New(env, id), p);
      }
      for (auto& [id, s] : st.peers) {
        Napi::Object p = Napi::Object::New(env);
        p.Set("txPackets", N(env, s.tx_packets));
        p.Set("txBytes", N(env, s.tx_bytes));
        p.Set("rxPackets", N(env, s.rx_packets));
        p.Set("rxBytes", N(env, s.rx_bytes));
        Napi::Object d = Napi::Object::New(env);
        d.Set("badTag", N(env, s.bad_tag));
        d.Set("replay", N(env, s.replay));
        d.Set("noSession", N(env, s.no_session));
        d.Set("notPlaintext", N(env, s.not_plaintext));
        d.Set("noRoute", N(env, s.no_route));
        d.Set("spoofed", N(env, s.spoofed));
        p.Set("drops", d);
        p.Set("lastRx", Napi::Number::New(env, static_cast<double>(s.last_rx_ms)));
        p.Set("sessions", Napi::Number::New(env, s.sessions));
        peers.Set(Napi::Number::New(env, id), p);
      }
      under.Set("unknownPeer", N(env, st.underlay.unknown_peer));
      under.Set("malformed", N(env, st.underlay.malformed));
      under.Set("punted", N(env, st.underlay.punted));
      under.Set("puntOverflow", N(env, st.underlay.punt_overflow));
      under.Set("txError", N(env, st.underlay.tx_errors));
      worker.Set("pollsWon", N(env, st.worker.polls_won));
      worker.Set("pollsLost", N(env, st.worker.polls_lost));
      // Which AES-256-GCM seals and opens the data messages (gcm.h).
      worker.Set("cipher", Napi::String::New(env, GcmImplementation()));
    }
    out.Set("ports", ports);
    out.Set("peers", peers);
    out.Set("underlay", under);
    out.Set("worker", worker);
    return out;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (tsfn_active_) tsfn_.Ref(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (tsfn_active_) tsfn_.Unref(info.Env());
    return info.Env().Undefined();
  }

  napi_env env_ = nullptr;
  std::shared_ptr<Engine> engine_;
  /** The last security table built and its bytes (see SetSecurity); not kept alive by this. */
  std::weak_ptr<const vpc::SgTable> last_sg_;
  std::vector<uint8_t> last_sg_bytes_;
  Napi::ThreadSafeFunction tsfn_;
  bool tsfn_active_ = false;
  bool hook_ = false;
};

}  // namespace

// class VpcAllowance { constructor({bandwidth, pps, allowanceQueueUs}, now); admit(bytes, packets, now);
// schedule(bytes, packets, now) }: the engine's per-ENI shaper (vpc_allowance.h) on an injected
// clock, for its unit test.
class VpcAllowanceWrap : public Napi::ObjectWrap<VpcAllowanceWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "VpcAllowance", {InstanceMethod<&VpcAllowanceWrap::Admit>("admit"),
                                             InstanceMethod<&VpcAllowanceWrap::Schedule>("schedule")});
  }
  explicit VpcAllowanceWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VpcAllowanceWrap>(info) {
    Napi::Env env = info.Env();
    vpc::PortConfig cfg;
    ReadPortConfig(env, ObjectArg(env, info[0], "VpcAllowance: limits"), "VpcAllowance", false, &cfg);
    a_.Set(cfg.allowance, Seconds(env, info[1]));
  }

 private:
  static double Seconds(Napi::Env env, Napi::Value v) {
    if (!v.IsNumber()) ThrowTypeError(env, "VpcAllowance: now must be a number of seconds");
    return v.As<Napi::Number>().DoubleValue();
  }
  static constexpr const char* kNames[] = {"pass", "bandwidth", "packets"};
  // 'pass', 'bandwidth' or 'packets' (the limit that dropped it), ignoring the queue.
  Napi::Value Admit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const double bytes = static_cast<double>(IntArg(env, info[0], "VpcAllowance.admit: bytes", 0, kMaxAllowance));
    const double packets = static_cast<double>(IntArg(env, info[1], "VpcAllowance.admit: packets", 1, kMaxAllowance));
    return Napi::String::New(env, kNames[a_.Admit(bytes, packets, Seconds(env, info[2]))]);
  }
  // { over: 'pass' | 'bandwidth' | 'packets', at: when it may go, or null when dropped }.
  Napi::Value Schedule(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const double bytes = static_cast<double>(IntArg(env, info[0], "VpcAllowance.schedule: bytes", 0, kMaxAllowance));
    const double packets = static_cast<double>(IntArg(env, info[1], "VpcAllowance.schedule: packets", 1, kMaxAllowance));
    const vpc::Allowance::Decision d = a_.Schedule(bytes, packets, Seconds(env, info[2]), a_.limits().queue);
    Napi::Object o = Napi::Object::New(env);
    o.Set("over", kNames[d.over]);
    o.Set("at", d.drop ? env.Null() : Napi::Number::New(env, d.at));
    return o;
  }
  vpc::Allowance a_;
};

// class VpcPollWindow { constructor(maxUs); idle(seconds): 'none' | 'won' | 'lost'; window }: the
// worker's busy-poll window (vpc_poll.h) on idle times the test passes in, for its unit test.
class VpcPollWindowWrap : public Napi::ObjectWrap<VpcPollWindowWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "VpcPollWindow", {InstanceMethod<&VpcPollWindowWrap::Idle>("idle"),
                                              InstanceAccessor<&VpcPollWindowWrap::Window>("window")});
  }
  explicit VpcPollWindowWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VpcPollWindowWrap>(info) {
    w_ = vpc::PollWindow(static_cast<double>(IntArg(info.Env(), info[0], "VpcPollWindow: maxUs", 0, vpc::kPollMaxLimitUs)) * 1e-6);
  }

 private:
  Napi::Value Idle(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber() || !(info[0].As<Napi::Number>().DoubleValue() >= 0)) {
      ThrowTypeError(env, "VpcPollWindow.idle: seconds must be a number >= 0");
    }
    static constexpr const char* kNames[] = {"none", "won", "lost"};
    return Napi::String::New(env, kNames[w_.Idle(info[0].As<Napi::Number>().DoubleValue())]);
  }
  Napi::Value Window(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), w_.window()); }
  vpc::PollWindow w_;
};

void InitVpc(Napi::Env env, Napi::Object exports) {
  exports.Set("VpcEngine", VpcEngineWrap::Define(env));
  exports.Set("VpcAllowance", VpcAllowanceWrap::Define(env));
  exports.Set("VpcPollWindow", VpcPollWindowWrap::Define(env));
}

}  // namespace nitride
