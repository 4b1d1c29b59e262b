// VPC data plane: AES-256-GCM sessions and the anti-replay window (wire
// format in vpc_wire.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "gcm.h"
#include "vpc_wire.h"

namespace nitride {
namespace vpc {

// RFC 6479 sliding window over received counters (the WireGuard variant:
// a ring of 64-bit words; one word of the ring is always the partly
// "future" block, so the usable window is kReplayBits - 64 counters).
class ReplayWindow {
 public:
  static constexpr unsigned kReplayBits = 8192;
  static constexpr unsigned kWindow = kReplayBits - 64;  // 8128 counters

  // True if `counter` is new and within the window (and marks it seen);
  // false for a duplicate, a counter older than the window, or one at or
  // above kHardCounterLimit. Call only after the message authenticated.
  bool CheckAndMark(uint64_t counter);

 private:
  static constexpr unsigned kWords = kReplayBits / 64;
  uint64_t top_ = 0;  // highest accepted counter + 1 (0: none yet)
  uint64_t bits_[kWords] = {};
};

// One session with a peer: a keyed AES-256-GCM (gcm.h: VAES or OpenSSL) per
// direction, the send counter and the receive replay window. The key bytes
// are not kept, only the schedules, cleansed when the session is freed. Not
// thread-safe: used by one thread at a time (the engine's worker, under its
// table lock).
class Session {
 public:
  // Keys both directions; null (error in *error) on OpenSSL failure.
  static std::unique_ptr<Session> Create(uint32_t local_index,
                                         uint32_t remote_index,
                                         const uint8_t send_key[kKeyBytes],
                                         const uint8_t recv_key[kKeyBytes],
                                         int64_t now_ms, std::string* error);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  uint32_t local_index() const { return local_index_; }
  uint32_t remote_index() const { return remote_index_; }
  int64_t created_ms() const { return created_ms_; }
  uint64_t send_counter() const { return send_counter_; }
  bool exhausted() const { return send_counter_ >= kHardCounterLimit; }

  // Encrypts `frame` (len bytes) into `out` as a complete data message
  // (len + kDataOverhead bytes; `out` must not overlap `frame`) with header
  // flags `flags` (byte 1, authenticated), consuming one counter. False if
  // the session is exhausted or OpenSSL fails.
  bool Seal(const uint8_t* frame, size_t len, uint8_t* out, uint8_t flags = 0);

  // Authenticates and decrypts a data message of `len` bytes in place: on
  // success the frame is at msg + kDataHeaderBytes, len - kDataOverhead
  // bytes long. Does not touch the replay window.
  bool Open(uint8_t* msg, size_t len);

  ReplayWindow& replay() { return replay_; }

  // Soft-limit bookkeeping of the engine (one rekey-needed event per
  // session).
  bool rekey_signalled = false;
  bool exhausted_signalled = false;
  // The peer announced in this session's handshake that it takes frames
  // marked kDataFlagCsumPartial (vpc_wire.h); older peers drop them.
  bool peer_csum_partial = false;

 private:
  Session() = default;
  uint32_t local_index_ = 0;
  uint32_t remote_index_ = 0;
  int64_t created_ms_ = 0;
  uint64_t send_counter_ = 0;
  std::unique_ptr<Aes256Gcm> send_;
  std::unique_ptr<Aes256Gcm> recv_;
  ReplayWindow replay_;
};

}  // namespace vpc
}  // namespace nitride
