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
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "nitride.h"

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

// Drains OpenSSL's (thread-local) error queue into a string. Always called on
// failure so that no stale error is left for node's own crypto code to see.
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

// Reads a Uint8Array (Buffer included) argument.
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

const uint8_t* KeyArg(Napi::Env env, Napi::Value v, const char* fn) {
  uint8_t* key;
  size_t len;
  BytesArg(env, v, fn, "key", &key, &len);
  if (len != kKeyBytes) {
    ThrowRangeError(env, std::string(fn) +
                             ": AES-256-XTS key must be 64 bytes, got " +
                             std::to_string(len));
  }
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

// Transforms buf in place, data unit by data unit, with a keyed ctx.
void Run(Napi::Env env, EVP_CIPHER_CTX* ctx, int enc, size_t unit,
         Napi::Value first_v, Napi::Value buf_v, const char* fn) {
  uint64_t first = DataUnitArg(env, first_v, fn);
  uint8_t* data;
  size_t len;
  BytesArg(env, buf_v, fn, "buf", &data, &len);
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
  unsigned char iv[kIvBytes] = {0};
  for (uint64_t i = 0; i < units; ++i) {
    const uint64_t n = first + i;
    for (int b = 0; b < 8; ++b) iv[b] = static_cast<unsigned char>(n >> (8 * b));
    uint8_t* p = data + i * unit;
    int outl = 0;
    if (EVP_CipherInit_ex2(ctx, nullptr, nullptr, iv, enc, nullptr) != 1 ||
        EVP_CipherUpdate(ctx, p, &outl, p, static_cast<int>(unit)) != 1 ||
        outl != static_cast<int>(unit)) {
      // Units before i are already transformed; the caller's buffer is in an
      // undefined state (this does not happen with a valid key and ctx).
      ThrowOpenSsl(env, std::string(fn) + ": data unit " + std::to_string(n));
    }
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

// class XtsCipher { constructor(key, dataUnitSize); encrypt(first, buf);
//   decrypt(first, buf); destroy(); readonly destroyed; readonly dataUnitSize }
// The key schedule lives only inside the two EVP contexts (one keyed for
// encryption, one for decryption: AES uses different round keys); the key
// buffer itself is not copied.
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
        });
  }

  explicit XtsCipher(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<XtsCipher>(info) {
    Napi::Env env = info.Env();
    const uint8_t* key = KeyArg(env, info[0], "XtsCipher");
    unit_ = UnitSizeArg(env, info[1], "XtsCipher");
    enc_ = NewKeyedCtx(env, key, 1, "XtsCipher");
    dec_ = NewKeyedCtx(env, key, 0, "XtsCipher");
  }

 private:
  void Live(Napi::Env env, const char* fn) const {
    if (!enc_) {
      ThrowWithCode(env, std::string("XtsCipher.") + fn +
                             ": the cipher has been destroyed",
                    "ERR_NITRIDE_XTS_DESTROYED");
    }
  }

  Napi::Value Encrypt(const Napi::CallbackInfo& info) {
    Live(info.Env(), "encrypt");
    Run(info.Env(), enc_.get(), 1, unit_, info[0], info[1],
        "XtsCipher.encrypt");
    return info.Env().Undefined();
  }

  Napi::Value Decrypt(const Napi::CallbackInfo& info) {
    Live(info.Env(), "decrypt");
    Run(info.Env(), dec_.get(), 0, unit_, info[0], info[1],
        "XtsCipher.decrypt");
    return info.Env().Undefined();
  }

  // Frees both contexts; OpenSSL's XTS provider cleanses the key schedule
  // (OPENSSL_clear_free) when a context is freed. Idempotent.
  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    enc_.reset();
    dec_.reset();
    return info.Env().Undefined();
  }

  Napi::Value Destroyed(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), !enc_);
  }

  Napi::Value DataUnitSize(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(unit_));
  }

  size_t unit_ = 0;
  CtxPtr enc_;
  CtxPtr dec_;
};

}  // namespace

void InitXts(Napi::Env env, Napi::Object exports) {
  FetchCipher();
  exports.Set("xtsEncrypt", Napi::Function::New(env, OneShot<1>, "xtsEncrypt"));
  exports.Set("xtsDecrypt", Napi::Function::New(env, OneShot<0>, "xtsDecrypt"));
  exports.Set("XtsCipher", XtsCipher::Define(env));
}

}  // namespace nitride
