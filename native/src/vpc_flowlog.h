// VPC data plane: flow-log counters per ENI. The data plane only adds a
// packet to the entry of its flow key and verdict (source, destination,
// ports, protocol, ACCEPT/REJECT): one hash update, no text, no I/O. The
// daemon takes the whole table at each aggregation interval (an O(1) swap
// under the engine's table mutex) and formats AWS version-2 records from it
// on the JS side. A full table never blocks or evicts: packets of a new key
// are counted as dropped, and the next take reports it (log-status SKIPDATA).
// Pure, like vpc_sg.h: the engine calls it under its table mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>

#include "vpc_sg.h"

namespace nitride {
namespace vpc {

struct FlowLogKey {
  uint32_t src, dst;
  uint16_t sport, dport;  // 0 for protocols without ports
  uint8_t proto;
  uint8_t accept;
  uint8_t pad[2];
  bool operator==(const FlowLogKey& o) const {
    return src == o.src && dst == o.dst && sport == o.sport && dport == o.dport && proto == o.proto && accept == o.accept;
  }
};
struct FlowLogKeyHash {
  size_t operator()(const FlowLogKey& k) const;
};
struct FlowLogCounts {
  uint64_t packets, bytes;
  int64_t first_ms, last_ms;  // the engine's monotonic clock
};
using FlowLogMap = std::unordered_map<FlowLogKey, FlowLogCounts, FlowLogKeyHash>;

class FlowLogTable {
 public:
  explicit FlowLogTable(size_t max_keys) : max_(max_keys) {}
  void set_max(size_t max_keys) { max_ = max_keys; }
  // One packet of `bytes` (its IP length) with this verdict.
  void Add(const FlowPacket& p, bool accept, size_t bytes, int64_t now_ms);
  // Moves the counters out (the table starts empty); *dropped = packets not
  // counted since the last take because the table was full.
  void Take(FlowLogMap* out, uint64_t* dropped);

 private:
  FlowLogMap keys_;
  size_t max_;
  uint64_t dropped_ = 0;
};

}  // namespace vpc
}  // namespace nitride
