// VPC data plane: AES-256-GCM sessions and the anti-replay window.
#include "vpc_crypto.h"
#include "nitride.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>

#include <mutex>

namespace nitride {
namespace vpc {

bool ReplayWindow::CheckAndMark(uint64_t counter) {
  // Port of WireGuard's counter_validate (drivers/net/wireguard/receive.c).
  if (counter >= kHardCounterLimit) return false;
  const uint64_t c = counter + 1;  // so that top_ == 0 means "none yet"
  if (c + kWindow < top_) return false;  // too old
  uint64_t index = c >> 6;
  if (c > top_) {
    const uint64_t index_current = top_ >> 6;
    uint64_t n = index - index_current;
    if (n > kWords) n = kWords;
    for (uint64_t i = 1; i <= n; ++i) bits_[(index_current + i) & (kWords - 1)] = 0;
    top_ = c;
  }
  index &= kWords - 1;
  const uint64_t bit = uint64_t{1} << (c & 63);
  if (bits_[index] & bit) return false;  // duplicate
  bits_[index] |= bit;
  return true;
}

namespace {

EVP_CIPHER* g_gcm = nullptr;
std::string* g_gcm_error = nullptr;
std::once_flag g_gcm_once;


EVP_CIPHER_CTX* KeyedCtx(const EVP_CIPHER* cipher, const uint8_t* key, int enc,
                         std::string* error) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (ctx == nullptr ||
      EVP_CipherInit_ex2(ctx, cipher, key, nullptr, enc, nullptr) != 1) {
    *error = "keying AES-256-GCM: " + OpenSslErrors();
    EVP_CIPHER_CTX_free(ctx);
    return nullptr;
  }
  return ctx;
}

// The GCM tag out of (set: into) a context. Straight to the provider's
// parameters: EVP_CIPHER_CTX_ctrl would translate the same call into them,
// per message (measured ~20 ns of ~130).
inline bool TagParam(EVP_CIPHER_CTX* ctx, uint8_t* tag, bool set) {
  OSSL_PARAM p[2] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, kTagBytes),
                     OSSL_PARAM_construct_end()};
  return (set ? EVP_CIPHER_CTX_set_params(ctx, p) : EVP_CIPHER_CTX_get_params(ctx, p)) == 1;
}

inline void Nonce(uint64_t counter, uint8_t nonce[kNonceBytes]) {
  nonce[0] = nonce[1] = nonce[2] = nonce[3] = 0;
  StoreLe64(nonce + 4, counter);
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

std::unique_ptr<Session> Session::Create(uint32_t local_index,
                                         uint32_t remote_index,
                                         const uint8_t send_key[kKeyBytes],
                                         const uint8_t recv_key[kKeyBytes],
                                         int64_t now_ms, std::string* error) {
  const EVP_CIPHER* cipher = GcmCipher(error);
  if (cipher == nullptr) return nullptr;
  std::unique_ptr<Session> s(new Session());
  s->local_index_ = local_index;
  s->remote_index_ = remote_index;
  s->created_ms_ = now_ms;
  s->send_ = KeyedCtx(cipher, send_key, 1, error);
  if (s->send_ == nullptr) return nullptr;
  s->recv_ = KeyedCtx(cipher, recv_key, 0, error);
  if (s->recv_ == nullptr) return nullptr;
  return s;
}

Session::~Session() {
  // The GCM provider's freectx clears the key schedule
  // (OPENSSL_clear_free) before releasing it.
  EVP_CIPHER_CTX_free(send_);
  EVP_CIPHER_CTX_free(recv_);
  OPENSSL_cleanse(&replay_, sizeof replay_);
}

bool Session::Seal(const uint8_t* frame, size_t len, uint8_t* out) {
  if (send_counter_ >= kHardCounterLimit) return false;
  const uint64_t counter = send_counter_++;
  out[0] = kMsgData;
  out[1] = out[2] = out[3] = 0;
  StoreLe32(out + 4, remote_index_);
  StoreLe64(out + 8, counter);
  uint8_t nonce[kNonceBytes];
  Nonce(counter, nonce);
  int outl = 0, finl = 0;
  if (EVP_EncryptInit_ex2(send_, nullptr, nullptr, nonce, nullptr) != 1 ||
      EVP_EncryptUpdate(send_, nullptr, &outl, out, kDataHeaderBytes) != 1 ||
      EVP_EncryptUpdate(send_, out + kDataHeaderBytes, &outl, frame,
                        static_cast<int>(len)) != 1 ||
      EVP_EncryptFinal_ex(send_, out + kDataHeaderBytes + outl, &finl) != 1 ||
      !TagParam(send_, out + kDataHeaderBytes + len, false)) {
    ERR_clear_error();
    return false;
  }
  return true;
}

bool Session::Open(uint8_t* msg, size_t len) {
  if (len < kDataOverhead) return false;
  const size_t n = len - kDataOverhead;
  const uint64_t counter = LoadLe64(msg + 8);
  uint8_t nonce[kNonceBytes];
  Nonce(counter, nonce);
  uint8_t* body = msg + kDataHeaderBytes;
  int outl = 0, finl = 0;
  if (EVP_DecryptInit_ex2(recv_, nullptr, nullptr, nonce, nullptr) != 1 ||
      EVP_DecryptUpdate(recv_, nullptr, &outl, msg, kDataHeaderBytes) != 1 ||
      EVP_DecryptUpdate(recv_, body, &outl, body, static_cast<int>(n)) != 1 ||
      !TagParam(recv_, body + n, true) ||
      EVP_DecryptFinal_ex(recv_, body + outl, &finl) != 1) {
    ERR_clear_error();
    // The (unauthenticated) plaintext written into the buffer is discarded
    // by the caller.
    return false;
  }
  return true;
}

}  // namespace vpc
}  // namespace nitride
