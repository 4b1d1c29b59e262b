// AES-256-GCM: gcm_vaes.cc or node's OpenSSL (see gcm.h).
#include "gcm.h"
#include "nitride.h"

#include <openssl/core_names.h>
#include <openssl/err.h>

#include <climits>
#include <mutex>

namespace nitride {

namespace {

EVP_CIPHER* g_gcm = nullptr;
std::string* g_gcm_error = nullptr;
std::once_flag g_gcm_once;

// The GCM tag out of (set: into) a context. Straight to the provider's
// parameters: EVP_CIPHER_CTX_ctrl would translate the same call into them,
// per message (measured ~20 ns of ~130).
inline bool TagParam(EVP_CIPHER_CTX* ctx, uint8_t* tag, bool set) {
  OSSL_PARAM p[2] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, Aes256Gcm::kTagBytes),
                     OSSL_PARAM_construct_end()};
  return (set ? EVP_CIPHER_CTX_set_params(ctx, p) : EVP_CIPHER_CTX_get_params(ctx, p)) == 1;
}

}  // namespace

const EVP_CIPHER* GcmCipher(std::string* error) {
  std::call_once(g_gcm_once, [] {
    g_gcm = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
    if (g_gcm == nullptr) g_gcm_error = new std::string(OpenSslErrors());
  });
  if (g_gcm == nullptr && error != nullptr) {
    *error = "AES-256-GCM is not available from node's OpenSSL: " +
             (g_gcm_error ? *g_gcm_error : std::string("?"));
  }
  return g_gcm;
}

const char* GcmImplementation() { return GcmVaesUsable() ? "vaes-avx512" : "openssl"; }

bool GcmAvailable(std::string* error) { return GcmVaesUsable() || GcmCipher(error) != nullptr; }

std::unique_ptr<Aes256Gcm> Aes256Gcm::Create(const uint8_t* key, std::string* error) {
  std::unique_ptr<Aes256Gcm> g(new Aes256Gcm());
  if (GcmVaesUsable()) {
    g->vaes_ = GcmVaesExpand(key);
    return g;
  }
  const EVP_CIPHER* cipher = GcmCipher(error);
  if (cipher == nullptr) return nullptr;
  g->ctx_ = EVP_CIPHER_CTX_new();
  if (g->ctx_ == nullptr || EVP_CipherInit_ex2(g->ctx_, cipher, key, nullptr, 1, nullptr) != 1) {
    *error = "keying AES-256-GCM: " + OpenSslErrors();
    return nullptr;
  }
  return g;
}

Aes256Gcm::~Aes256Gcm() {
  // The GCM provider's freectx clears the key schedule (OPENSSL_clear_free);
  // vaes_'s deleter cleanses its own.
  EVP_CIPHER_CTX_free(ctx_);
}

bool Aes256Gcm::Seal(const uint8_t* iv, const uint8_t* aad, size_t aad_len, const uint8_t* in, uint8_t* out,
                     size_t len, uint8_t* tag) {
  if (vaes_) {
    GcmVaesSeal(*vaes_, iv, aad, aad_len, in, out, len, tag);
    return true;
  }
  if (len > INT_MAX || aad_len > INT_MAX) return false;
  int outl = 0, finl = 0;
  if (EVP_EncryptInit_ex2(ctx_, nullptr, nullptr, iv, nullptr) != 1 ||
      (aad_len != 0 && EVP_EncryptUpdate(ctx_, nullptr, &outl, aad, static_cast<int>(aad_len)) != 1) ||
      EVP_EncryptUpdate(ctx_, out, &outl, in, static_cast<int>(len)) != 1 ||
      EVP_EncryptFinal_ex(ctx_, out + outl, &finl) != 1 || !TagParam(ctx_, tag, false)) {
    ERR_clear_error();
    return false;
  }
  return true;
}

bool Aes256Gcm::Open(const uint8_t* iv, const uint8_t* aad, size_t aad_len, const uint8_t* in, uint8_t* out,
                     size_t len, const uint8_t* tag) {
  if (vaes_) return GcmVaesOpen(*vaes_, iv, aad, aad_len, in, out, len, tag);
  if (len > INT_MAX || aad_len > INT_MAX) return false;
  int outl = 0, finl = 0;
  if (EVP_DecryptInit_ex2(ctx_, nullptr, nullptr, iv, nullptr) != 1 ||
      (aad_len != 0 && EVP_DecryptUpdate(ctx_, nullptr, &outl, aad, static_cast<int>(aad_len)) != 1) ||
      EVP_DecryptUpdate(ctx_, out, &outl, in, static_cast<int>(len)) != 1 ||
      !TagParam(ctx_, const_cast<uint8_t*>(tag), true) || EVP_DecryptFinal_ex(ctx_, out + outl, &finl) != 1) {
    ERR_clear_error();
    return false;
  }
  return true;
}

}  // namespace nitride
