// VPC data plane: underlay wire format and byte helpers.
//
// Frames between hosts travel in UDP datagrams, one Ethernet frame (no FCS,
// no VLAN tag, at most the destination ENI's MTU + 14 bytes) per datagram.
// All integers are little-endian (as in WireGuard, whose layout this copies).
//
// Data message (type 4), encrypted:
//
//   offset  size  field
//   0       1     type = 4
//   1       1     flags: kDataFlagCsumPartial (0x01) or zero; other bits
//                 reserved, zero
//   2       2     reserved, zero
//   4       4     receiver index (u32 LE): the *receiver's* localIndex of
//                 the session (the sender's remoteIndex)
//   8       8     counter (u64 LE): per session and direction, starting at 0,
//                 incremented by one per message, never reused
//   16      n     AES-256-GCM ciphertext of the Ethernet frame (n = frame
//                 length, 14..mtu+14), or nothing (n = 0): a keepalive, which
//                 only confirms the session to a responder
//   16+n    16    GCM tag
//
//   key   = the session's sendKey (32 bytes) on the sender, which is the
//           receiver's recvKey
//   nonce = 4 zero bytes || counter (u64 LE)             (12 bytes)
//   AAD   = the 16-byte header (type, reserved, receiver index, counter)
//
// kDataFlagCsumPartial: the frame is an IPv4/IPv6 TCP or UDP packet whose
// checksum field holds only the pseudo-header sum (Linux's CHECKSUM_PARTIAL,
// at the offsets TransportCsumOffsets of vpc_frame.h finds). The receiver
// coalesces such a segment without verifying it and gives the guest a
// virtio_net_hdr NEEDS_CSUM; the flag is in the AAD, so it is as
// authenticated as the frame. A sender sets it only on a session whose
// handshake announced the capability (UNDERLAY_CAP_CSUM_PARTIAL in
// src/vpc/constants.ts): daemons before it count a nonzero byte 1 as
// malformed and drop the datagram.
//
// A sender stops using a session once its counter reaches kHardCounterLimit
// (2^60); the receiver rejects counters at or above it too. The receiver
// authenticates first, then checks the counter against an anti-replay
// sliding window (RFC 6479 bitmap, kReplayWindow counters), then marks it.
//
// Plaintext message (type 5), only between peers both put in plaintext mode
// with setPlaintext (an explicit opt-in, e.g. for debugging or for an
// underlay that is already encrypted):
//
//   0       1     type = 5
//   1       3     reserved, zero
//   4       n     the Ethernet frame, unencrypted
//
// A host drops (and counts as notPlaintext) a type-5 message from a peer it
// has not put in plaintext mode.
//
// Any other type (1, 2, 3: handshake initiation / response / cookie reply in
// the TypeScript control plane's handshake; 0 and 6..255 too) is not
// interpreted by the data plane: the whole datagram is handed to JS with the
// sender's address and port.
//
// Overhead per frame: 32 bytes (data) or 4 bytes (plaintext), plus the
// Ethernet header of the frame inside (14) and the UDP and IP headers of the
// underlay (8 + 20 for IPv4, 8 + 40 for IPv6). So an ENI MTU of 1500 needs an
// underlay path MTU of at least 1574 (IPv4) to avoid IP fragmentation; with a
// 1500-byte underlay, ENIs get kDefaultVpcMtu (1420, DHCP option 26; at most 1426
// would fit). A VPC created with its own MTU (up to kMaxMtu, jumbo frames) needs
// an underlay carrying that + 74 (IPv4); the control plane checks it.
//
// The message types, sizes, EtherTypes and MTUs shared with the TypeScript
// side come from shared_constants.h, generated from it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "shared_constants.h"

namespace nitride {
namespace vpc {

constexpr size_t kDataOverhead = kDataHeaderBytes + kTagBytes;
constexpr size_t kNonceBytes = 12;

// A session never sends, and never accepts, a counter at or above this.
constexpr uint64_t kHardCounterLimit = uint64_t{1} << 60;

// Ethernet.
constexpr size_t kMinFrame = kEthHeader;
constexpr uint16_t kEtherQinQ = 0x88a8;
constexpr uint16_t kEtherVlan9100 = 0x9100;

// An ENI's MTU is from kMinMtu (IPv4's minimum) to kMaxMtu (AWS's jumbo MTU);
// its VPC's, which the control plane sets, within that.
static_assert(kDefaultVpcMtu + kEthHeader + kDataOverhead + 8 + 20 <= 1500,
              "a default VPC's frame in a data message must fit a 1500-byte IPv4 underlay");
// Largest frame the engine forwards between hosts (kMaxMtu + Ethernet
// header), and the largest underlay datagram it sends.
constexpr size_t kMaxFrame = kMaxMtu + kEthHeader;
constexpr size_t kMaxDatagram = kMaxFrame + kDataOverhead;

inline uint16_t LoadBe16(const uint8_t* p) {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}
inline void StoreBe16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline uint32_t LoadBe32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
         (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}
inline void StoreBe32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}
inline uint32_t LoadLe32(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) |
         (uint32_t{p[3]} << 24);
}
inline void StoreLe32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline uint64_t LoadLe64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
inline void StoreLe64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// A MAC address as a 48-bit integer (first byte most significant), the key
// of the forwarding table.
inline uint64_t MacKey(const uint8_t* mac) {
  uint64_t k = 0;
  for (int i = 0; i < 6; ++i) k = (k << 8) | mac[i];
  return k;
}
inline bool IsMulticastMac(const uint8_t* mac) { return (mac[0] & 1) != 0; }

}  // namespace vpc
}  // namespace nitride
