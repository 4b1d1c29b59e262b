// VPC data plane: AES-256-GCM sessions and the anti-replay window.
#include "vpc_crypto.h"
#include "nitride.h"

#include <openssl/crypto.h>

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

inline void Nonce(uint64_t counter, uint8_t nonce[kNonceBytes]) {
  nonce[0] = nonce[1] = nonce[2] = nonce[3] = 0;
  StoreLe64(nonce + 4, counter);
}

}  // namespace

std::unique_ptr<Session> Session::Create(uint32_t local_index,
                                         uint32_t remote_index,
                                         const uint8_t send_key[kKeyBytes],
                                         const uint8_t recv_key[kKeyBytes],
                                         int64_t now_ms, std::string* error) {
  std::unique_ptr<Session> s(new Session());
  s->local_index_ = local_index;
  s->remote_index_ = remote_index;
  s->created_ms_ = now_ms;
  s->send_ = Aes256Gcm::Create(send_key, error);
  if (s->send_ == nullptr) return nullptr;
  s->recv_ = Aes256Gcm::Create(recv_key, error);
  if (s->recv_ == nullptr) return nullptr;
  return s;
}

Session::~Session() {
  // send_ and recv_ cleanse their key schedules as they are freed.
  OPENSSL_cleanse(&replay_, sizeof replay_);
}

bool Session::Seal(const uint8_t* frame, size_t len, uint8_t* out, uint8_t flags) {
  if (send_counter_ >= kHardCounterLimit) return false;
  const uint64_t counter = send_counter_++;
  out[0] = kMsgData;
  out[1] = flags;
  out[2] = out[3] = 0;
  StoreLe32(out + 4, remote_index_);
  StoreLe64(out + 8, counter);
  uint8_t nonce[kNonceBytes];
  Nonce(counter, nonce);
  return send_->Seal(nonce, out, kDataHeaderBytes, frame, out + kDataHeaderBytes, len,
                     out + kDataHeaderBytes + len);
}

bool Session::Open(uint8_t* msg, size_t len) {
  if (len < kDataOverhead) return false;
  const size_t n = len - kDataOverhead;
  const uint64_t counter = LoadLe64(msg + 8);
  uint8_t nonce[kNonceBytes];
  Nonce(counter, nonce);
  uint8_t* body = msg + kDataHeaderBytes;
  // The (unauthenticated) plaintext written into the buffer on failure is
  // discarded by the caller.
  return recv_->Open(nonce, msg, kDataHeaderBytes, body, body, n, body + n);
}

}  // namespace vpc
}  // namespace nitride
