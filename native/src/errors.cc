// Error helpers shared by the addon's parts.
#include <string.h>
#include <uv.h>

#include <climits>
#include <cmath>

#include "nitride.h"

#include <openssl/err.h>

namespace nitride {

namespace {

// strerror_r comes in two flavours (GNU returns char*, XSI returns int).
[[maybe_unused]] const char* StrerrorResult(int rc, const char* buf) {
  return rc == 0 ? buf : "Unknown error";
}
[[maybe_unused]] const char* StrerrorResult(const char* s, const char*) {
  return s;
}

std::string ErrnoMessage(int err) {
  char buf[256];
  buf[0] = '\0';
  return StrerrorResult(strerror_r(err, buf, sizeof buf), buf);
}

std::string ErrnoName(int err) {
  // libuv error codes are -errno on Unix; uv_err_name_r gives "EBUSY" etc.
  // (libuv's symbols are re-exported by node, like OpenSSL's).
  char buf[64];
  uv_err_name_r(-err, buf, sizeof buf);
  return buf;
}

}  // namespace

void ThrowErrno(Napi::Env env, const std::string& step, int err,
                const char* syscall) {
  Napi::Error e = Napi::Error::New(env, step + ": " + ErrnoMessage(err));
  Napi::Object o = e.Value();
  o.Set("code", Napi::String::New(env, ErrnoName(err)));
  o.Set("errno", Napi::Number::New(env, -err));
  o.Set("syscall", Napi::String::New(env, syscall));
  throw e;
}

void ThrowWithCode(Napi::Env env, const std::string& msg, const char* code) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Value().Set("code", Napi::String::New(env, code));
  throw e;
}

void ThrowTypeError(Napi::Env env, const std::string& msg) {
  Napi::TypeError e = Napi::TypeError::New(env, msg);
  e.Value().Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
  throw e;
}

void ThrowRangeError(Napi::Env env, const std::string& msg) {
  Napi::RangeError e = Napi::RangeError::New(env, msg);
  e.Value().Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
  throw e;
}

void ThrowInvalidValue(Napi::Env env, const std::string& msg) {
  ThrowWithCode(env, msg, "ERR_INVALID_ARG_VALUE");
}

void BytesArg(Napi::Env env, Napi::Value v, const char* fn, const char* what,
              uint8_t** data, size_t* len) {
  if (!v.IsTypedArray() ||
      v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    ThrowTypeError(env, std::string(fn) + ": " + what +
                            " must be a Buffer or Uint8Array");
  }
  Napi::Uint8Array a = v.As<Napi::Uint8Array>();
  *data = a.Data();
  *len = a.ByteLength();
}

uint8_t* FixedBytesArg(Napi::Env env, Napi::Value v, const char* fn, const char* what, size_t want) {
  uint8_t* p;
  size_t len;
  BytesArg(env, v, fn, what, &p, &len);
  if (len != want) {
    ThrowRangeError(env, std::string(fn) + ": " + what + " must be " + std::to_string(want) + " bytes, got " +
                             std::to_string(len));
  }
  return p;
}

int FdArg(const Napi::CallbackInfo& info, size_t i, const char* fn) {
  Napi::Env env = info.Env();
  if (!info[i].IsNumber()) {
    ThrowTypeError(env, std::string(fn) + ": fd must be a number");
  }
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > INT_MAX || std::floor(d) != d) {
    ThrowRangeError(env, std::string(fn) +
                             ": fd must be an integer in [0, 2^31-1], got " +
                             info[i].ToString().Utf8Value());
  }
  return static_cast<int>(d);
}

bool OptionalUint(Napi::Object obj, const char* key, uint64_t max,
                  const char* fn, uint64_t* out) {
  Napi::Env env = obj.Env();
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined()) return false;
  if (!v.IsNumber()) {
    ThrowTypeError(env, std::string(fn) + ": option '" + key +
                            "' must be a number");
  }
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > static_cast<double>(max) || std::floor(d) != d) {
    ThrowRangeError(env, std::string(fn) + ": option '" + key +
                             "' must be an integer in [0, " +
                             std::to_string(max) + "], got " +
                             v.ToString().Utf8Value());
  }
  *out = static_cast<uint64_t>(d);
  return true;
}

bool OptionalBool(Napi::Object obj, const char* key, const char* fn,
                  bool* out) {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined()) return false;
  if (!v.IsBoolean()) {
    ThrowTypeError(obj.Env(), std::string(fn) + ": option '" + key +
                                  "' must be a boolean");
  }
  *out = v.As<Napi::Boolean>().Value();
  return true;
}

std::string OpenSslErrors() {
  std::string out;
  unsigned long code;
  char buf[256];
  while ((code = ERR_get_error()) != 0) {
    ERR_error_string_n(code, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? std::string("unknown OpenSSL error") : out;
}

}  // namespace nitride
