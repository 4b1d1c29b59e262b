// The JS face of IoLimiter (io_limiter.h): one object per volume, handed to
// each of its NbdLanes (which keep a share of the limiter) and called by the
// event-loop plane for the requests it serves itself.
#include "io_limiter.h"

#include <time.h>

#include <memory>
#include <string>

#include "nitride.h"

namespace nitride {

namespace {

double Now() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Tells a genuine IoLimiter from any other wrapped object (see kXtsCipherTag).
const napi_type_tag kIoLimiterTag = {0x6e697472696465ULL, 0x496f4c696d697472ULL};

// An optional `now` argument (seconds, the limiter's clock): tests inject it.
double NowArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() > i && info[i].IsNumber()) return info[i].As<Napi::Number>().DoubleValue();
  return Now();
}

double RateOption(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return 0;
  if (!v.IsNumber()) ThrowTypeError(o.Env(), std::string("IoLimiter: option '") + key + "' must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || !std::isfinite(d)) ThrowRangeError(o.Env(), std::string("IoLimiter: option '") + key + "' must be a finite number >= 0");
  return d;
}

IoLimits LimitsArg(Napi::Env env, Napi::Value v) {
  IoLimits l;
  if (v.IsUndefined() || v.IsNull()) return l;
  if (!v.IsObject()) ThrowTypeError(env, "IoLimiter: limits must be an object");
  Napi::Object o = v.As<Napi::Object>();
  l.iops = RateOption(o, "iops");
  l.bps = RateOption(o, "bytesPerSecond");
  l.burst_iops = RateOption(o, "burstIops");
  l.burst_io_credits = RateOption(o, "burstIoCredits");
  l.burst_bps = RateOption(o, "burstBytesPerSecond");
  l.burst_bytes = RateOption(o, "burstBytes");
  return l;
}

class IoLimiterWrap : public Napi::ObjectWrap<IoLimiterWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "IoLimiter",
                       {
                           InstanceMethod<&IoLimiterWrap::Set>("set"),
                           InstanceMethod<&IoLimiterWrap::Reserve>("reserve"),
                           InstanceMethod<&IoLimiterWrap::Counters>("counters"),
                           InstanceMethod<&IoLimiterWrap::Generation>("generation"),
                           StaticMethod<&IoLimiterWrap::Clock>("now"),
                       });
  }

  // new IoLimiter(limits?, now?)
  explicit IoLimiterWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<IoLimiterWrap>(info) {
    limiter_ = std::make_shared<IoLimiter>();
    limiter_->Set(LimitsArg(info.Env(), info[0]), NowArg(info, 1));
    info.This().As<Napi::Object>().TypeTag(&kIoLimiterTag);
  }

  std::shared_ptr<IoLimiter> limiter() const { return limiter_; }

 private:
  // set(limits, now?): live change.
  Napi::Value Set(const Napi::CallbackInfo& info) {
    limiter_->Set(LimitsArg(info.Env(), info[0]), NowArg(info, 1));
    return info.Env().Undefined();
  }

  // reserve(length, now?): seconds to wait before the request may start (0: at once).
  Napi::Value Reserve(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber()) ThrowTypeError(env, "IoLimiter.reserve: length must be a number");
    double len = info[0].As<Napi::Number>().DoubleValue();
    if (!(len >= 0) || len > 9007199254740991.0) ThrowRangeError(env, "IoLimiter.reserve: length out of range");
    double now = NowArg(info, 1);
    if (!limiter_->Limited()) return Napi::Number::New(env, 0);
    return Napi::Number::New(env, std::max(0.0, limiter_->Reserve(static_cast<uint64_t>(len), now) - now));
  }

  // counters(now?): {throttledIopsSeconds, throttledThroughputSeconds, burstIoCredits, burstBytes}
  Napi::Value Counters(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    double now = NowArg(info, 0);
    double iops, tp, ios, bytes;
    limiter_->Throttled(now, &iops, &tp);
    limiter_->Credits(now, &ios, &bytes);
    Napi::Object o = Napi::Object::New(env);
    o.Set("throttledIopsSeconds", iops);
    o.Set("throttledThroughputSeconds", tp);
    o.Set("burstIoCredits", ios >= 0 ? Napi::Value(Napi::Number::New(env, ios)) : env.Null());
    o.Set("burstBytes", bytes >= 0 ? Napi::Value(Napi::Number::New(env, bytes)) : env.Null());
    return o;
  }

  Napi::Value Generation(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(limiter_->Generation()));
  }

  // IoLimiter.now(): the limiter's clock (CLOCK_MONOTONIC seconds).
  static Napi::Value Clock(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), Now()); }

  std::shared_ptr<IoLimiter> limiter_;
};

}  // namespace

std::shared_ptr<IoLimiter> IoLimiterArg(Napi::Env env, Napi::Value v, const char* fn) {
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&kIoLimiterTag)) {
    ThrowTypeError(env, std::string(fn) + ": limiter must be an IoLimiter");
  }
  return IoLimiterWrap::Unwrap(v.As<Napi::Object>())->limiter();
}

void InitIoLimiter(Napi::Env env, Napi::Object exports) {
  exports.Set("IoLimiter", IoLimiterWrap::Define(env));
}

}  // namespace nitride
