// class AesGcm { constructor(key); seal(iv, aad, data, tag); open(iv, aad,
//   data, tag): boolean; cpuNsPerOp(op, length, iterations); destroy();
//   readonly implementation } — the VPC data plane's AES-256-GCM (gcm.h)
// exposed so that tests can check it against node:crypto and
// scripts/bench-gcm.mjs can time it; the engine itself does not use this.
#include "gcm.h"
#include "nitride.h"

#include <time.h>

#include <cstring>
#include <vector>

namespace nitride {
namespace {

double ThreadCpuNs() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e9 + static_cast<double>(t.tv_nsec);
}

class AesGcm : public Napi::ObjectWrap<AesGcm> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "AesGcm",
                       {
                           InstanceMethod<&AesGcm::Seal>("seal"),
                           InstanceMethod<&AesGcm::Open>("open"),
                           InstanceMethod<&AesGcm::CpuNsPerOp>("cpuNsPerOp"),
                           InstanceMethod<&AesGcm::Destroy>("destroy"),
                           InstanceAccessor<&AesGcm::Implementation>("implementation"),
                       });
  }

  explicit AesGcm(const Napi::CallbackInfo& info) : Napi::ObjectWrap<AesGcm>(info) {
    Napi::Env env = info.Env();
    const uint8_t* key = FixedBytesArg(env, info[0], "AesGcm", "key", Aes256Gcm::kKeyBytes);
    std::string error;
    gcm_ = Aes256Gcm::Create(key, &error);
    if (!gcm_) ThrowWithCode(env, "AesGcm: " + error, "ERR_OPENSSL");
  }

 private:
  Aes256Gcm& Live(Napi::Env env, const char* fn) {
    if (!gcm_) ThrowWithCode(env, std::string(fn) + ": the cipher has been destroyed", "ERR_NITRIDE_GCM_DESTROYED");
    return *gcm_;
  }

  struct Args {
    const uint8_t* iv;
    uint8_t* aad;
    size_t aad_len;
    uint8_t* data;
    size_t len;
    uint8_t* tag;
  };

  static Args Parse(const Napi::CallbackInfo& info, const char* fn) {
    Napi::Env env = info.Env();
    Args a;
    a.iv = FixedBytesArg(env, info[0], fn, "iv", Aes256Gcm::kIvBytes);
    BytesArg(env, info[1], fn, "aad", &a.aad, &a.aad_len);
    BytesArg(env, info[2], fn, "data", &a.data, &a.len);
    a.tag = FixedBytesArg(env, info[3], fn, "tag", Aes256Gcm::kTagBytes);
    return a;
  }

  // Encrypts data in place and writes the tag.
  Napi::Value Seal(const Napi::CallbackInfo& info) {
    Aes256Gcm& g = Live(info.Env(), "AesGcm.seal");
    Args a = Parse(info, "AesGcm.seal");
    if (!g.Seal(a.iv, a.aad, a.aad_len, a.data, a.data, a.len, a.tag)) {
      ThrowWithCode(info.Env(), "AesGcm.seal: " + OpenSslErrors(), "ERR_OPENSSL");
    }
    return info.Env().Undefined();
  }

  // Decrypts data in place if the tag matches; otherwise false, data zeroed.
  Napi::Value Open(const Napi::CallbackInfo& info) {
    Aes256Gcm& g = Live(info.Env(), "AesGcm.open");
    Args a = Parse(info, "AesGcm.open");
    const bool ok = g.Open(a.iv, a.aad, a.aad_len, a.data, a.data, a.len, a.tag);
    if (!ok && a.len != 0) memset(a.data, 0, a.len);
    return Napi::Boolean::New(info.Env(), ok);
  }

  // Benchmark aid: this thread's CPU time per seal or open of `length`
  // bytes (16 bytes of AAD, as a VPC data message), over `iterations` calls
  // in a native loop (a JS loop would time the N-API call too).
  Napi::Value CpuNsPerOp(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const char* fn = "AesGcm.cpuNsPerOp";
    Aes256Gcm& g = Live(env, fn);
    const std::string op = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    if (op != "seal" && op != "open") ThrowInvalidValue(env, std::string(fn) + ": op must be \"seal\" or \"open\"");
    if (!info[1].IsNumber() || !info[2].IsNumber()) ThrowTypeError(env, std::string(fn) + ": length and iterations must be numbers");
    const double length = info[1].As<Napi::Number>().DoubleValue();
    const double iterations = info[2].As<Napi::Number>().DoubleValue();
    if (!(length >= 0 && length <= (1 << 24)) || !(iterations >= 1 && iterations <= 1e9)) {
      ThrowRangeError(env, std::string(fn) + ": length must be 0..16 MiB and iterations 1..1e9");
    }
    const size_t n = static_cast<size_t>(length);
    const uint64_t count = static_cast<uint64_t>(iterations);
    std::vector<uint8_t> in(n + 1, 0x5a), out(n + 1);
    uint8_t iv[Aes256Gcm::kIvBytes] = {}, aad[16] = {}, tag[Aes256Gcm::kTagBytes];
    bool ok = g.Seal(iv, aad, sizeof aad, in.data(), in.data(), n, tag);
    const double t0 = ThreadCpuNs();
    for (uint64_t i = 0; i < count && ok; ++i) {
      // Open reads the sealed copy and writes elsewhere, so that every call
      // authenticates (same work as in place).
      ok = op == "seal" ? g.Seal(iv, aad, sizeof aad, out.data(), out.data(), n, tag)
                        : g.Open(iv, aad, sizeof aad, in.data(), out.data(), n, tag);
    }
    const double t1 = ThreadCpuNs();
    if (!ok) ThrowWithCode(env, std::string(fn) + ": " + op + " failed", "ERR_OPENSSL");
    return Napi::Number::New(env, (t1 - t0) / static_cast<double>(count));
  }

  // Frees the key schedule (cleansed). Idempotent.
  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    gcm_.reset();
    return info.Env().Undefined();
  }

  // "vaes-avx512" (gcm_vaes.cc) or "openssl"; the same for the whole process.
  Napi::Value Implementation(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), GcmImplementation());
  }

  std::unique_ptr<Aes256Gcm> gcm_;
};

}  // namespace

void InitGcm(Napi::Env env, Napi::Object exports) { exports.Set("AesGcm", AesGcm::Define(env)); }

}  // namespace nitride
