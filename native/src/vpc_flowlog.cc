// Flow-log counters (vpc_flowlog.h).
#include "vpc_flowlog.h"

namespace nitride {
namespace vpc {

size_t FlowLogKeyHash::operator()(const FlowLogKey& k) const {
  uint64_t x = (uint64_t{k.src} << 32 | k.dst) ^ ((uint64_t{k.sport} << 32 | uint64_t{k.dport} << 16 | uint64_t{k.proto} << 8 | k.accept) * 0x9e3779b97f4a7c15ull);
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ull;
  return static_cast<size_t>(x ^ (x >> 29));
}

void FlowLogTable::Add(const FlowPacket& p, bool accept, size_t bytes, int64_t now_ms) {
  FlowLogKey k{};
  k.src = p.src;
  k.dst = p.dst;
  k.proto = p.proto;
  k.accept = accept ? 1 : 0;
  if ((p.proto == kProtoTcp || p.proto == kProtoUdp) && !p.fragment) {
    k.sport = p.sport;
    k.dport = p.dport;
  }
  auto it = keys_.find(k);
  if (it == keys_.end()) {
    if (keys_.size() >= max_) {
      ++dropped_;
      return;
    }
    it = keys_.emplace(k, FlowLogCounts{0, 0, now_ms, now_ms}).first;
  }
  it->second.packets += 1;
  it->second.bytes += bytes;
  it->second.last_ms = now_ms;
}

void FlowLogTable::Take(FlowLogMap* out, uint64_t* dropped) {
  out->clear();
  out->swap(keys_);
  *dropped = dropped_;
  dropped_ = 0;
}

}  // namespace vpc
}  // namespace nitride
