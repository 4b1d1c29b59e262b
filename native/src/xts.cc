// AES-256-XTS sector encryption through OpenSSL EVP (node's own OpenSSL, see
// binding.gyp), in place, one data unit (sector) at a time.
//
// Tweak convention: the 16-byte XTS tweak of data unit n is n as a 128-bit
// little-endian integer (IEEE 1619 "data unit sequence number"; dm-crypt and
// qemu call this IV generator "plain64").
//
// Cost model (see /work/shared/reference/node-native.md): the cipher is
// fetched once, each context is keyed once, and only the IV is re-initialised
// per data unit; passing EVP_aes_256_xts() to every init would re-fetch.
//
// Threads: an EVP_CIPHER_CTX is not thread-safe (every per-unit IV re-init
// writes into it), and blockio.cc runs XtsCipher transforms on libuv
// threadpool workers concurrently with each other and with the main thread.
// So a cipher's key material lives in a shared XtsKey: two keyed *template*
// contexts that are only ever read (copied), plus a mutex-protected pool of
// working contexts, each an EVP_CIPHER_CTX_copy of a template (the copy
// carries the key schedule; no key bytes are kept). A transform leases one
// working context, and returns it afterwards; the pool grows to the number of
// threads that ever used the cipher at once. Measured (OpenSSL 3.0, this
// class of machine): new+copy+free of an XTS ctx 140-190 ns, keying a fresh
// ctx 260-360 ns, an uncontended lease (mutex) under 10 ns; the AES work of a
// 4 KiB unit is 0.6-0.9 us, so a copy per request would cost 15-20% on 4 KiB
// requests and the pool costs nothing measurable.
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "aes256_ni.h"
#include "nitride.h"
#include "xts_vaes.h"

namespace nitride {

namespace {

constexpr size_t kKeyBytes = 64;  // two AES-256 keys
constexpr size_t kIvBytes = 16;

// Fetched once per process at module init. An EVP_CIPHER is immutable and
// reference counted, so sharing it between threads/worker envs is safe; every
// context keyed with it holds its own reference. Never freed (process
// lifetime). Null if the fetch failed, with the reason in g_fetch_error.
EVP_CIPHER* g_xts = nullptr;
std::string* g_fetch_error = nullptr;
std::once_flag g_fetch_once;


[[noreturn]] void ThrowOpenSsl(Napi::Env env, const std::string& what) {
  ThrowWithCode(env, what + ": " + OpenSslErrors(), "ERR_OPENSSL");
}

void FetchCipher() {
  std::call_once(g_fetch_once, [] {
    g_xts = EVP_CIPHER_fetch(nullptr, "AES-256-XTS", nullptr);
    if (g_xts == nullptr) {
      g_fetch_error = new std::string(OpenSslErrors());
    }
  });
}

EVP_CIPHER* Cipher(Napi::Env env) {
  if (g_xts == nullptr) {
    ThrowWithCode(env,
                  "AES-256-XTS is not available from node's OpenSSL: " +
                      (g_fetch_error ? *g_fetch_error : std::string("?")),
                  "ERR_OPENSSL");
  }
  return g_xts;
}

struct CtxDeleter {
  // EVP_CIPHER_CTX_free -> provider freectx, which for XTS clears the key
  // schedule (OPENSSL_clear_free) before freeing it.
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using CtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CtxDeleter>;


const uint8_t* KeyArg(Napi::Env env, Napi::Value v, const char* fn) {
  const uint8_t* key = FixedBytesArg(env, v, fn, "AES-256-XTS key", kKeyBytes);
  if (CRYPTO_memcmp(key, key + kKeyBytes / 2, kKeyBytes / 2) == 0) {
    ThrowInvalidValue(env, std::string(fn) +
                               ": AES-256-XTS key halves are identical; the "
                               "data key and the tweak key must differ "
                               "(IEEE 1619, OpenSSL rejects such keys)");
  }
  return key;
}

size_t UnitSizeArg(Napi::Env env, Napi::Value v, const char* fn) {
  if (!v.IsNumber()) {
    ThrowTypeError(env, std::string(fn) + ": dataUnitSize must be a number");
  }
  double d = v.As<Napi::Number>().DoubleValue();
  // dm-crypt's sector sizes: powers of two from 512 to 4096.
  if (d != 512 && d != 1024 && d != 2048 && d != 4096) {
    ThrowRangeError(env, std::string(fn) +
                             ": dataUnitSize must be 512, 1024, 2048 or 4096,"
                             " got " +
                             v.ToString().Utf8Value());
  }
  return static_cast<size_t>(d);
}

uint64_t DataUnitArg(Napi::Env env, Napi::Value v, const char* fn) {
  if (v.IsBigInt()) {
    bool lossless = false;
    uint64_t n = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) {
      ThrowRangeError(env, std::string(fn) +
                               ": firstDataUnit must be in [0, 2^64-1], got " +
                               v.ToString().Utf8Value());
    }
    return n;
  }
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d > 9007199254740991.0 || std::floor(d) != d) {
      ThrowRangeError(env, std::string(fn) +
                               ": firstDataUnit must be a non-negative safe "
                               "integer (use a bigint above 2^53-1), got " +
                               v.ToString().Utf8Value());
    }
    return static_cast<uint64_t>(d);
  }
  ThrowTypeError(env,
                 std::string(fn) + ": firstDataUnit must be a bigint or number");
}

CtxPtr NewKeyedCtx(Napi::Env env, const uint8_t* key, int enc, const char* fn) {
  CtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) ThrowOpenSsl(env, std::string(fn) + ": EVP_CIPHER_CTX_new");
  if (EVP_CipherInit_ex2(ctx.get(), Cipher(env), key, nullptr, enc, nullptr) !=
      1) {
    ThrowOpenSsl(env, std::string(fn) + ": setting the AES-256-XTS key");
  }
  return ctx;
}

// Transforms len bytes (whole data units) from `in` to `out` (which may be
// the same memory), data unit by data unit, with a keyed ctx. Returns the
// number of the failing data unit's index + 1 on failure (0 = success); the
// OpenSSL error queue then holds the reason. Touches no JS: safe on any
// thread as long as `ctx` is used by one thread at a time.
uint64_t TransformUnits(EVP_CIPHER_CTX* ctx, int enc, size_t unit,
                        uint64_t first, const uint8_t* in, uint8_t* out,
                        size_t len) {
  const uint64_t units = len / unit;
  unsigned char iv[kIvBytes] = {0};
  for (uint64_t i = 0; i < units; ++i) {
    const uint64_t n = first + i;
    for (int b = 0; b < 8; ++b) iv[b] = static_cast<unsigned char>(n >> (8 * b));
    int outl = 0;
    if (EVP_CipherInit_ex2(ctx, nullptr, nullptr, iv, enc, nullptr) != 1 ||
        EVP_CipherUpdate(ctx, out + i * unit, &outl, in + i * unit,
                         static_cast<int>(unit)) != 1 ||
        outl != static_cast<int>(unit)) {
      return i + 1;
    }
  }
  return 0;
}

// Validates the data unit range of a transform: len a multiple of unit and
// the last unit number within 2^64-1.
void CheckUnits(Napi::Env env, size_t unit, uint64_t first, size_t len,
                const char* fn) {
  if (len % unit != 0) {
    ThrowRangeError(env, std::string(fn) + ": buffer length " +
                             std::to_string(len) +
                             " is not a multiple of the data unit size " +
                             std::to_string(unit));
  }
  const uint64_t units = len / unit;
  if (units > 0 && first > UINT64_MAX - (units - 1)) {
    ThrowRangeError(env, std::string(fn) + ": data units " +
                             std::to_string(first) + " + " +
                             std::to_string(units) + " overflow 2^64");
  }
}

// The (firstDataUnit, buf) arguments of a transform, checked.
struct TransformArgs {
  uint64_t first;
  uint8_t* data;
  size_t len;
};

TransformArgs ParseTransform(Napi::Env env, size_t unit, Napi::Value first_v,
                             Napi::Value buf_v, const char* fn) {
  TransformArgs a;
  a.first = DataUnitArg(env, first_v, fn);
  BytesArg(env, buf_v, fn, "buf", &a.data, &a.len);
  CheckUnits(env, unit, a.first, a.len, fn);
  return a;
}

// Transforms buf in place, data unit by data unit, with a keyed ctx.
void Run(Napi::Env env, EVP_CIPHER_CTX* ctx, int enc, size_t unit,
         Napi::Value first_v, Napi::Value buf_v, const char* fn) {
  auto [first, data, len] = ParseTransform(env, unit, first_v, buf_v, fn);
  if (uint64_t failed = TransformUnits(ctx, enc, unit, first, data, data, len)) {
    // Units before the failing one are already transformed; the caller's
    // buffer is in an undefined state (this does not happen with a valid key
    // and ctx).
    ThrowOpenSsl(env, std::string(fn) + ": data unit " +
                          std::to_string(first + failed - 1));
  }
}

// xtsEncrypt / xtsDecrypt (key, dataUnitSize, firstDataUnit, buf): one-shot,
// keys a fresh ctx per call.
template <int kEnc>
Napi::Value OneShot(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = kEnc ? "xtsEncrypt" : "xtsDecrypt";
  const uint8_t* key = KeyArg(env, info[0], fn);
  size_t unit = UnitSizeArg(env, info[1], fn);
  CtxPtr ctx = NewKeyedCtx(env, key, kEnc, fn);
  Run(env, ctx.get(), kEnc, unit, info[2], info[3], fn);
  return env.Undefined();
}

// Type tag of XtsCipher objects, so that XtsKeyArg can tell a genuine
// XtsCipher from any other wrapped object (napi_unwrap's wrapper slot is
// shared by every N-API addon in the process).
const napi_type_tag kXtsCipherTag = {0x6e697472696465ULL, 0x5874734369706872ULL};

}  // namespace

// The key state shared by an XtsCipher and the threadpool operations using
// it (see the header comment). Freed, with its contexts (OpenSSL cleanses
// their key schedules), when the last owner lets go.
struct XtsKey {
  size_t unit = 0;
  // Round keys for xts_vaes.cc where the CPU has VAES; transforms then never
  // touch the OpenSSL contexts below.
  XtsVaesKeyPtr vaes;
  CtxPtr tmpl[2];  // [0] decrypt, [1] encrypt; keyed, never transformed with
  std::mutex mu;
  std::vector<EVP_CIPHER_CTX*> pool[2];

  ~XtsKey() {
    for (auto& p : pool) {
      for (EVP_CIPHER_CTX* c : p) EVP_CIPHER_CTX_free(c);
    }
  }

  // A working context for direction `enc` (null on OpenSSL failure).
  EVP_CIPHER_CTX* Lease(int enc) {
    {
      std::lock_guard<std::mutex> lock(mu);
      auto& p = pool[enc];
      if (!p.empty()) {
        EVP_CIPHER_CTX* c = p.back();
        p.pop_back();
        return c;
      }
    }
    // Templates are immutable after construction: copying concurrently from
    // several threads only reads them.
    EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
    if (c != nullptr && EVP_CIPHER_CTX_copy(c, tmpl[enc].get()) != 1) {
      EVP_CIPHER_CTX_free(c);
      c = nullptr;
    }
    return c;
  }

  void Return(int enc, EVP_CIPHER_CTX* c) {
    std::lock_guard<std::mutex> lock(mu);
    pool[enc].push_back(c);
  }
};

size_t XtsUnitSize(const XtsKey& key) { return key.unit; }

bool XtsTransform(XtsKey& key, bool encrypt, uint64_t first_unit,
                  const uint8_t* in, uint8_t* out, size_t len,
                  std::string* error) {
  if (key.vaes) {
    XtsVaesTransform(*key.vaes, encrypt, key.unit, first_unit, in, out, len);
    return true;
  }
  const int enc = encrypt ? 1 : 0;
  EVP_CIPHER_CTX* ctx = key.Lease(enc);
  if (ctx == nullptr) {
    *error = "copying the AES-256-XTS context: " + OpenSslErrors();
    return false;
  }
  uint64_t failed = TransformUnits(ctx, enc, key.unit, first_unit, in, out, len);
  key.Return(enc, ctx);
  if (failed != 0) {
    *error = "AES-256-XTS data unit " + std::to_string(first_unit + failed - 1) +
             ": " + OpenSslErrors();
    return false;
  }
  return true;
}

namespace {

// class XtsCipher { constructor(key, dataUnitSize); encrypt(first, buf);
//   decrypt(first, buf); destroy(); readonly destroyed; readonly dataUnitSize }
// The key schedule lives only inside the EVP contexts of the shared XtsKey
// (keyed for encryption and for decryption: AES uses different round keys);
// the key buffer itself is not copied.
class XtsCipher : public Napi::ObjectWrap<XtsCipher> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "XtsCipher",
        {
            InstanceMethod<&XtsCipher::Encrypt>("encrypt"),
            InstanceMethod<&XtsCipher::Decrypt>("decrypt"),
            InstanceMethod<&XtsCipher::Destroy>("destroy"),
            InstanceAccessor<&XtsCipher::Destroyed>("destroyed"),
            InstanceAccessor<&XtsCipher::DataUnitSize>("dataUnitSize"),
            InstanceAccessor<&XtsCipher::Implementation>("implementation"),
        });
  }

  explicit XtsCipher(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<XtsCipher>(info) {
    Napi::Env env = info.Env();
    const uint8_t* key = KeyArg(env, info[0], "XtsCipher");
    unit_ = UnitSizeArg(env, info[1], "XtsCipher");
    auto k = std::make_shared<XtsKey>();
    k->unit = unit_;
    k->tmpl[1] = NewKeyedCtx(env, key, 1, "XtsCipher");
    k->tmpl[0] = NewKeyedCtx(env, key, 0, "XtsCipher");
    if (XtsVaesUsable()) k->vaes = XtsVaesExpand(key);
    vaes_ = k->vaes != nullptr;
    key_ = std::move(k);
    info.This().As<Napi::Object>().TypeTag(&kXtsCipherTag);
  }

  // The shared key state; throws once destroyed.
  std::shared_ptr<XtsKey> Key(Napi::Env env, const char* fn) const {
    Live(env, fn);
    return key_;
  }

 private:
  void Live(Napi::Env env, const char* fn) const {
    if (!key_) {
      ThrowWithCode(env, std::string(fn) + ": the cipher has been destroyed",
                    "ERR_NITRIDE_XTS_DESTROYED");
    }
  }

  template <int kEnc>
  Napi::Value Transform(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const char* fn = kEnc ? "XtsCipher.encrypt" : "XtsCipher.decrypt";
    Live(env, fn);
    auto [first, data, len] = ParseTransform(env, unit_, info[0], info[1], fn);
    std::string error;
    if (!XtsTransform(*key_, kEnc == 1, first, data, data, len, &error)) {
      ThrowWithCode(env, std::string(fn) + ": " + error, "ERR_OPENSSL");
    }
    return env.Undefined();
  }

  Napi::Value Encrypt(const Napi::CallbackInfo& info) { return Transform<1>(info); }
  Napi::Value Decrypt(const Napi::CallbackInfo& info) { return Transform<0>(info); }

  // Drops this object's reference to the key state. With no threadpool
  // operation in flight that frees the contexts at once (OpenSSL's XTS
  // provider cleanses the key schedules, OPENSSL_clear_free); otherwise the
  // last in-flight operation frees them as it finishes. Idempotent.
  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    key_.reset();
    return info.Env().Undefined();
  }

  Napi::Value Destroyed(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), !key_);
  }

  Napi::Value DataUnitSize(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(unit_));
  }

  // "vaes-avx512" (xts_vaes.cc) or "openssl"; fixed at construction.
  Napi::Value Implementation(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), vaes_ ? "vaes-avx512" : "openssl");
  }

  size_t unit_ = 0;
  bool vaes_ = false;
  std::shared_ptr<XtsKey> key_;
};

}  // namespace

std::shared_ptr<XtsKey> XtsKeyArg(Napi::Env env, Napi::Value v, const char* fn) {
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&kXtsCipherTag)) {
    ThrowTypeError(env, std::string(fn) + ": cipher must be an XtsCipher");
  }
  XtsCipher* c = XtsCipher::Unwrap(v.As<Napi::Object>());
  if (c == nullptr) {
    ThrowTypeError(env, std::string(fn) + ": cipher must be an XtsCipher");
  }
  return c->Key(env, fn);
}

void InitXts(Napi::Env env, Napi::Object exports) {
  FetchCipher();
  // The cipher implementation switches (aes256_ni.h), for the daemon's check of its environment.
  Napi::Object switches = Napi::Object::New(env);
  Napi::Array names = Napi::Array::New(env, 2);
  names.Set(0u, aes256_ni::kXtsImplVariable);
  names.Set(1u, aes256_ni::kGcmImplVariable);
  switches.Set("variables", names);
  switches.Set("value", aes256_ni::kForceOpenssl);
  exports.Set("cipherImplSwitches", switches);
  exports.Set("xtsEncrypt", Napi::Function::New(env, OneShot<1>, "xtsEncrypt"));
  exports.Set("xtsDecrypt", Napi::Function::New(env, OneShot<0>, "xtsDecrypt"));
  exports.Set("XtsCipher", XtsCipher::Define(env));
}

}  // namespace nitride
