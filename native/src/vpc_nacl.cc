// Network ACLs: the ordered, stateless check (vpc_nacl.h).
#include "vpc_nacl.h"

#include "vpc_wire.h"

namespace nitride {
namespace vpc {

namespace {
uint32_t MaskOf(uint8_t prefix) { return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix); }
}  // namespace

std::shared_ptr<const NaclTable> NaclTable::Build(const uint8_t* data, size_t len, std::string* err) {
  if (len % kSgEntryBytes != 0) {
    *err = "network ACL table length " + std::to_string(len) + " is not a multiple of " + std::to_string(kSgEntryBytes);
    return nullptr;
  }
  auto t = std::make_shared<NaclTable>();
  for (size_t o = 0; o < len; o += kSgEntryBytes) {
    const uint8_t* e = data + o;
    const uint8_t dir = e[0], proto = e[1], pfx = e[2], action = e[3];
    const uint32_t net = LoadLe32(e + 4);
    const uint16_t lo = static_cast<uint16_t>(e[8] | (e[9] << 8));
    const uint16_t hi = static_cast<uint16_t>(e[10] | (e[11] << 8));
    if (dir > kSgDirEgress || pfx > 32 || lo > hi || action > kNaclActionAllow || (net & ~MaskOf(pfx)) != 0 ||
        (proto != kSgProtoAll && proto != kProtoIcmp && proto != kProtoTcp && proto != kProtoUdp)) {
      *err = "network ACL table entry " + std::to_string(o / kSgEntryBytes) + " is malformed";
      return nullptr;
    }
    t->rules_[dir].push_back(Rule{net, MaskOf(pfx), lo, hi, proto, action == kNaclActionAllow});
  }
  return t;
}

bool NaclTable::Allows(int dir, uint8_t proto, uint32_t peer, uint16_t port) const {
  for (const Rule& r : rules_[dir]) {
    if ((peer & r.mask) != r.net) continue;
    if (r.proto == kSgProtoAll || (r.proto == proto && port >= r.lo && port <= r.hi)) return r.allow;
  }
  return false;
}

}  // namespace vpc
}  // namespace nitride
