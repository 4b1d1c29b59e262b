// VPC data plane: Ethernet frame inspection (source check, control-frame
// classification), checksum completion and software GSO segmentation for
// frames read from a packet socket with PACKET_VNET_HDR.
//
// Why GSO: a veth end or a TAP fed by QEMU (vnet_hdr=on, QEMU's default)
// hands the host TCP/UDP "super-frames" of up to 64 KiB with a
// virtio_net_hdr describing the segmentation (gso_type, gso_size) and, for
// CHECKSUM_PARTIAL packets, where the transport checksum still has to be
// computed (csum_start, csum_offset). Between local ENIs the engine passes
// such frames through unchanged (the kernel segments them if the receiving
// device cannot take them); towards another host it segments them here into
// MTU-sized frames with complete checksums, as a NIC with TSO would.
#pragma once

#include <cstddef>
#include <cstdint>

#include "vpc_wire.h"

namespace nitride {
namespace vpc {

// struct virtio_net_hdr of <linux/virtio_net.h> (which C++ cannot include:
// it has a member named `class`), in the byte order of PACKET_VNET_HDR
// sockets: the host's (legacy virtio, little-endian on x86).
struct virtio_net_hdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
};
static_assert(sizeof(virtio_net_hdr) == 10, "virtio_net_hdr layout");
constexpr uint8_t VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
constexpr uint8_t VIRTIO_NET_HDR_GSO_NONE = 0;
constexpr uint8_t VIRTIO_NET_HDR_GSO_TCPV4 = 1;
constexpr uint8_t VIRTIO_NET_HDR_GSO_UDP = 3;  // UFO: not supported
constexpr uint8_t VIRTIO_NET_HDR_GSO_TCPV6 = 4;
constexpr uint8_t VIRTIO_NET_HDR_GSO_UDP_L4 = 5;  // missing from Debian 12's headers
constexpr uint8_t VIRTIO_NET_HDR_GSO_ECN = 0x80;

constexpr size_t kVnetHdrBytes = sizeof(virtio_net_hdr);  // 10

// What the source-check / classification pass decided for a guest frame.
enum class GuestVerdict {
  kForward,   // unicast data: look up the destination MAC
  kPunt,      // control frame: hand to JS, do not forward
  kSpoofed,   // source MAC/IP is not the port's
  kFiltered,  // ethertype the VPC does not carry (source-checked ports)
  kInvalid,   // runt, VLAN-tagged, or headers that do not parse
};

enum class PuntReason : uint8_t { kArp, kDhcp, kBroadcast, kMulticast, kRoute };
const char* PuntReasonName(PuntReason r);

// Per-port policy used on the per-frame path.
struct PortPolicy {
  uint8_t mac[6] = {0};
  bool has_ipv4 = false;
  uint8_t ipv4[4] = {0};  // network byte order
  bool source_check = true;
};

// Classifies a guest frame (len >= kMinFrame) of the port with policy `p`.
// With source checking on: the Ethernet source must be the port's MAC; IPv4
// packets must come from the port's address (or be a DHCP client message
// from 0.0.0.0, UDP 68 -> 67); ARP sender MAC and IP must be the port's
// (sender IP 0.0.0.0 allowed: RFC 5227 probes); other ethertypes are
// filtered. Then ARP, DHCP to a server (IPv4 UDP to port 67) and
// broadcast/multicast frames are punted.
GuestVerdict ClassifyGuestFrame(const uint8_t* f, size_t len,
                                const PortPolicy& p, PuntReason* reason);

// Internet checksum helpers (RFC 1071), in native byte order: the folded sum
// of a buffer is stored with memcpy, so byte order never needs swapping.
uint64_t ChecksumAdd(const uint8_t* p, size_t n, uint64_t sum);
uint16_t ChecksumFold(uint64_t sum);

// Completes a CHECKSUM_PARTIAL packet (VIRTIO_NET_HDR_F_NEEDS_CSUM): sums
// from csum_start to the end of the IP packet (the checksum field holds the
// pseudo-header sum) and stores the complement at csum_start + csum_offset.
// False if the offsets do not fit the frame.
bool CompleteChecksum(uint8_t* f, size_t len, const virtio_net_hdr& h);

// Where the transport checksum of an unfragmented IPv4/IPv6 TCP or UDP
// packet is (its csum_start, csum_offset as in virtio_net_hdr); false for
// anything else. The offsets a segment marked "checksum partial" on the
// underlay (vpc_wire.h) is delivered with.
bool TransportCsumOffsets(const uint8_t* f, size_t len, uint16_t* start, uint16_t* offset);

// Largest frame a GSO super-frame turns into after segmentation (headers +
// gso_size), or 0 if its headers do not parse / the GSO type is not
// supported (TCPv4, TCPv6, UDP L4 are).
size_t GsoSegmentFrameLen(const uint8_t* f, size_t len, const virtio_net_hdr& h);

// Splits a GSO super-frame into frames of at most headers + gso_size bytes
// with fixed-up IP lengths/ids, TCP sequence numbers and flags, UDP lengths,
// and complete IPv4 header checksums. The transport checksum is complete,
// or with `partial` only the pseudo-header sum (CHECKSUM_PARTIAL: what the
// kernel expects at TransportCsumOffsets; the payload is not read twice).
// Each segment is built in `scratch` (at least GsoSegmentFrameLen bytes)
// and passed to emit(ctx, scratch, seg_len) before the next one overwrites
// it (the sink may complete the checksum in place). Returns the number of
// segments, or -1 if the frame cannot be segmented.
using SegmentSink = void (*)(void* ctx, uint8_t* seg, size_t len);
int SegmentGso(const uint8_t* f, size_t len, const virtio_net_hdr& h, bool partial,
               uint8_t* scratch, SegmentSink emit, void* ctx);

// Receive coalescing (what GRO does in a NIC driver): consecutive TCP
// segments of one flow arriving from a peer are handed to the guest as one
// GSO super-frame (virtio_net_hdr GSO_TCPV4/6 + NEEDS_CSUM), so its stack
// and the veth/TAP path handle one packet instead of dozens.
struct TcpSegment {
  bool v4 = false;
  size_t l4 = 0;       // TCP header offset
  size_t hdr = 0;      // payload offset (all headers)
  size_t payload = 0;  // payload bytes
  uint32_t seq = 0;
  uint8_t flags = 0;
};

// Accepts an IPv4 (no options, not fragmented) or IPv6 (no extension
// headers) TCP segment with a payload, flags ACK or ACK|PSH, an IP length
// matching the frame, and, with `verify`, a correct TCP checksum (a
// coalesced frame reaches the guest marked as checksummed, so a segment
// with a checksum of its own must have a right one; a segment the peer's
// engine marked "checksum partial" has none to check).
bool ParseMergeableTcp(const uint8_t* f, size_t len, bool verify, TcpSegment* t);

// True if segment `g` (parsed as tg) continues the flow of frame `first`
// (parsed as tf): same Ethernet addresses, IP header (but lengths, IPv4 id
// and checksum), ports, ack, window, data offset and options.
bool SameTcpFlow(const uint8_t* first, const TcpSegment& tf, const uint8_t* g,
                 const TcpSegment& tg);

// Rewrites the headers of the first frame of a coalesced super-frame of
// `total` bytes (IP length and checksum; PSH from `extra_flags`; the TCP
// checksum field set to the pseudo-header sum as CHECKSUM_PARTIAL requires)
// and fills its virtio_net_hdr.
void FinishTcpSuperFrame(uint8_t* first, const TcpSegment& tf, size_t total,
                         uint16_t gso_size, uint8_t extra_flags,
                         virtio_net_hdr* h);

}  // namespace vpc
}  // namespace nitride
