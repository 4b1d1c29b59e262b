// VPC data plane: network ACLs per subnet (AWS semantics: stateless, numbered
// rules, first match decides, no match denies), as each local ENI of the
// subnet sees them. Built from the entries src/vpc/nacl-table.ts encodes, in
// rule-number order. Every packet into or out of the ENI is checked (no
// connection state): an ordered scan of at most a few dozen entries per
// direction (AWS caps an ACL at 40), each a mask, a compare and a range test.
// Unlike AWS, traffic inside the subnet is checked too: nitride has no router
// between subnets yet, so all traffic is inside one.
// Pure, like vpc_sg.h: the engine calls it under its table mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "shared_constants.h"

namespace nitride {
namespace vpc {

class NaclTable {
 public:
  // From the encoded entries (12 bytes each). Null and *err if malformed.
  static std::shared_ptr<const NaclTable> Build(const uint8_t* data, size_t len, std::string* err);
  // Whether a packet of direction `dir` to/from `peer` passes; `port` is the
  // destination port (TCP/UDP) or (type << 8) | code (ICMP).
  bool Allows(int dir, uint8_t proto, uint32_t peer, uint16_t port) const;
  size_t entries() const { return rules_[0].size() + rules_[1].size(); }

 private:
  struct Rule {
    uint32_t net, mask;
    uint16_t lo, hi;
    uint8_t proto;  // kSgProtoAll: every protocol and port
    bool allow;
  };
  std::vector<Rule> rules_[2];
};

}  // namespace vpc
}  // namespace nitride
