// VPC data plane: security groups per ENI. A compiled rule table (built
// from the entries src/vpc/sg-table.ts encodes) classifies the first packet
// of a flow; a per-ENI connection-tracking table lets the rest of an allowed
// flow, its replies and related ICMP errors through with one hash lookup.
// Pure: no sockets, no locks (the engine calls it under its table mutex), the
// clock passed in, so tests and benchmarks can drive it directly.
//
// Classifier: per direction, one level per distinct prefix length present,
// each a hash of the masked networks to their allowed ranges per protocol,
// merged and sorted (binary search). A new flow costs one hash probe per
// distinct prefix length (at most 33), whatever the number of rules.
//
// Connection tracking, as AWS describes it (and Linux nf_conntrack does):
// - TCP: a flow starts only with a SYN (without ACK) that the rules allow;
//   any other TCP packet without an entry is dropped (after a flush, the
//   remaining packets of a connection do not re-open it). Replies make it
//   established; a RST, or FINs both ways, leave CT_TCP_CLOSING_S for
//   stragglers; a new SYN on a closing entry is a new flow.
// - UDP: any allowed packet starts a flow; a reply makes it replied, a
//   second request after a reply a stream (longer timeout).
// - ICMP echo: tracked by identifier; other informational types are judged
//   by the rules alone. ICMP errors pass when the packet they quote belongs to
//   a tracked flow of this ENI (related), else by the rules.
// - Non-first IPv4 fragments carry no ports: they pass (the guest cannot
//   reassemble them without the first fragment, which was judged).
// - A full table drops new flows (counted by the caller), never an
//   established one: expired entries are swept first, at most once a second.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "shared_constants.h"

namespace nitride {
namespace vpc {

// The fields of an IPv4 packet the security groups look at (host byte order).
struct FlowPacket {
  uint32_t src = 0, dst = 0;
  uint8_t proto = 0;
  uint16_t sport = 0, dport = 0;  // ICMP echo: the identifier in both
  uint8_t tcp_flags = 0;
  uint8_t icmp_type = 0, icmp_code = 0;
  bool fragment = false;    // a non-first fragment: no transport header
  bool icmp_echo = false;   // echo request/reply (tracked)
  bool icmp_error = false;  // error quoting `inner`
  struct Inner {
    uint32_t src = 0, dst = 0;
    uint8_t proto = 0;
    uint16_t sport = 0, dport = 0;
  } inner;
};

// What a rule's port range matches: the destination port (TCP/UDP) or
// (type << 8) | code (ICMP).
inline uint16_t RulePort(const FlowPacket& p) {
  return p.proto == kProtoIcmp ? static_cast<uint16_t>((p.icmp_type << 8) | p.icmp_code) : p.dport;
}

enum class FlowParse { kNotIpv4, kOk, kInvalid };
// Parses the IPv4 packet of Ethernet frame `f` (len >= 14).
FlowParse ParseFlowPacket(const uint8_t* f, size_t len, FlowPacket* p);

// Directions (kSgDirIngress: towards the guest, kSgDirEgress: from it), the
// entry layout and the timeouts come from src/vpc/sg-table.ts.
class SgTable {
 public:
  // From the encoded entries (12 bytes each). Null and *err set if malformed.
  static std::shared_ptr<const SgTable> Build(const uint8_t* data, size_t len, std::string* err);
  // Whether a new flow to/from `peer` is allowed; `port` is the destination
  // port (TCP/UDP) or (type << 8) | code (ICMP).
  bool Allows(int dir, uint8_t proto, uint32_t peer, uint16_t port) const;
  size_t entries() const { return entries_; }

 private:
  struct Ranges {
    std::vector<std::pair<uint16_t, uint16_t>> r;  // sorted, merged
    bool Contains(uint16_t x) const;
  };
  struct Bucket {
    bool all = false;  // protocol "all"
    Ranges icmp, tcp, udp;
  };
  struct Level {
    uint8_t prefix;
    uint32_t mask;
    std::unordered_map<uint32_t, Bucket> nets;
  };
  std::vector<Level> levels_[2];
  size_t entries_ = 0;
};

struct CtConfig {
  uint32_t max_flows;
  uint32_t tcp_established_s;
};

struct CtFlowInfo {
  uint8_t proto;
  uint32_t local_ip, remote_ip;
  uint16_t local_port, remote_port;
  int origin;  // kSgDirIngress or kSgDirEgress
  const char* state;
  int64_t expires_in_ms;
  uint64_t packets[2], bytes[2];  // by direction (kSgDirIngress, kSgDirEgress)
};

class Conntrack {
 public:
  enum class Verdict { kAllow, kDeny, kFull };
  explicit Conntrack(CtConfig cfg) : cfg_(cfg) {}
  void Configure(CtConfig cfg) { cfg_ = cfg; }
  const CtConfig& config() const { return cfg_; }
  // Judges one packet of direction `dir` on this ENI against the tracked
  // flows, then (new flows) `table`; tracks what it allows.
  Verdict Process(const FlowPacket& p, int dir, const SgTable& table, int64_t now_ms, size_t bytes);
  size_t Flush();
  size_t size() const { return flows_.size(); }
  // Up to `max` live flows.
  void List(std::vector<CtFlowInfo>* out, size_t max, int64_t now_ms) const;
  // Bytes one tracked flow takes in the table (entry, node and bucket).
  static size_t BytesPerFlow();

 private:
  struct Key {
    uint32_t in_ip, out_ip;  // the ENI's side, the remote side
    uint16_t in_port, out_port;
    uint8_t proto;
    uint8_t pad[3];
    bool operator==(const Key& o) const {
      return in_ip == o.in_ip && out_ip == o.out_ip && in_port == o.in_port && out_port == o.out_port && proto == o.proto;
    }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  enum State : uint8_t { kNew, kEstablished, kStream, kClosing };
  struct Entry {
    int64_t expires_ms;
    uint8_t state;
    uint8_t origin;
    uint8_t fin;  // bit per direction
    uint64_t packets[2], bytes[2];
  };
  int64_t Timeout(uint8_t proto, uint8_t state) const;
  static const char* StateName(uint8_t proto, uint8_t state);

  CtConfig cfg_;
  std::unordered_map<Key, Entry, KeyHash> flows_;
  int64_t last_sweep_ms_ = -1000000;
};

}  // namespace vpc
}  // namespace nitride
