// AES-256-GCM with one key and 96-bit IVs: gcm_vaes.cc where the CPU has
// VAES/VPCLMULQDQ/AVX-512, else node's OpenSSL (EVP, one context keyed once).
// Used by the VPC sessions (vpc_crypto.cc) and, for tests and benchmarks,
// by the addon's AesGcm class (gcm_napi.cc).
#ifndef NITRIDE_GCM_H_
#define NITRIDE_GCM_H_

#include <openssl/evp.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "gcm_vaes.h"

namespace nitride {

// Fetched once per process (EVP_CIPHER_fetch "AES-256-GCM"); null with a
// reason in *error if node's OpenSSL cannot provide it.
const EVP_CIPHER* GcmCipher(std::string* error);

// "vaes-avx512" or "openssl" (NITRIDE_GCM_IMPL=openssl, or a CPU without
// VAES): what every Aes256Gcm of this process runs.
const char* GcmImplementation();

// Whether Aes256Gcm::Create can key a cipher in this process: always with
// VAES; else node's OpenSSL must provide AES-256-GCM (reason in *error).
bool GcmAvailable(std::string* error);

// Not thread-safe (the OpenSSL path re-initialises its context per message):
// one thread at a time.
class Aes256Gcm {
 public:
  static constexpr size_t kKeyBytes = 32;
  static constexpr size_t kIvBytes = 12;
  static constexpr size_t kTagBytes = 16;

  // Null (error in *error) on OpenSSL failure. The key bytes are not kept:
  // only the schedule (gcm_vaes: cleansed on free; OpenSSL: its context,
  // which OpenSSL cleanses when freed).
  static std::unique_ptr<Aes256Gcm> Create(const uint8_t* key, std::string* error);
  ~Aes256Gcm();
  Aes256Gcm(const Aes256Gcm&) = delete;
  Aes256Gcm& operator=(const Aes256Gcm&) = delete;

  // in and out: the same memory or not overlapping. Seal fails only on an
  // OpenSSL error; Open also when the tag does not match (out then holds
  // unauthenticated plaintext, to be discarded).
  bool Seal(const uint8_t* iv, const uint8_t* aad, size_t aad_len, const uint8_t* in, uint8_t* out, size_t len,
            uint8_t* tag);
  bool Open(const uint8_t* iv, const uint8_t* aad, size_t aad_len, const uint8_t* in, uint8_t* out, size_t len,
            const uint8_t* tag);

 private:
  Aes256Gcm() = default;
  GcmVaesKeyPtr vaes_;
  EVP_CIPHER_CTX* ctx_ = nullptr;
};

}  // namespace nitride

#endif  // NITRIDE_GCM_H_
