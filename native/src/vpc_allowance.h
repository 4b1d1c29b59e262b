// Allowance: an ENI's bandwidth and packet allowance in one direction (ENA's
// bw_in/bw_out/pps allowances), a shaper on the engine thread. Pure
// arithmetic on a clock the caller passes in (seconds): unit-tested without
// timers (test/native/vpc-allowance.test.ts). Not thread-safe: the engine
// touches it with mu_ held (the worker per batch, UpdatePort from JS).
//
// Two token buckets (gcra.h): bits and packets, each
// `rate` per second and qos::kAllowanceDepthSeconds of it deep (at least one
// 64 KiB GSO super-frame / its 64 segments). A frame passes when both
// buckets hold any tokens, and is then charged in full, so a super-frame is
// never refused for being larger than what is left: the bucket goes into
// debt by up to one frame and the long-run rate is still exact. A frame
// over the limit is scheduled (GCRA virtual scheduling) for the moment both
// buckets hold tokens again: if that is within `queue` seconds it is
// charged now and waits until then (like tc tbf's latency), else it is
// dropped uncharged. queue = 0: over-limit frames are dropped (as ENA does).
#pragma once

#include <algorithm>

#include "gcra.h"
#include "shared_constants.h"

namespace nitride {
namespace vpc {

// Per second; 0: unlimited. `queue`: the longest an over-limit frame may
// wait, in seconds (0: it is dropped).
struct AllowanceLimits {
  double bits = 0;
  double packets = 0;
  double queue = 0;
  bool operator==(const AllowanceLimits& o) const {
    return bits == o.bits && packets == o.packets && queue == o.queue;
  }
  bool operator!=(const AllowanceLimits& o) const { return !(*this == o); }
};

class Allowance {
 public:
  // The limit a frame exceeded on arrival (kPass: none).
  enum Verdict { kPass = 0, kBandwidth = 1, kPackets = 2 };
  struct Decision {
    Verdict over = kPass;  // what it exceeded on arrival (counted: queued or dropped)
    bool drop = false;     // true: not charged, not sent
    double at = 0;         // when it may go (== now unless queued)
  };
  static constexpr double kMinBitsDepth = 65536.0 * 8;
  static constexpr double kMinPacketsDepth = 64;

  // New limits (live: eni modify); each bucket starts full.
  void Set(const AllowanceLimits& l, double now) {
    limits_ = l;
    Fill(&bits_, l.bits, kMinBitsDepth, now);
    Fill(&packets_, l.packets, kMinPacketsDepth, now);
  }
  const AllowanceLimits& limits() const { return limits_; }
  bool limited() const { return bits_.rate > 0 || packets_.rate > 0; }

  // A frame of `bytes` (`packets` segments for a GSO super-frame) at `now`,
  // which may wait up to `queue` seconds (the caller passes 0 when its queue
  // is full): charged and sent now, charged and queued until `at`, or
  // dropped. Over both limits it counts as over the packet limit.
  Decision Schedule(double bytes, double packets, double now, double queue) {
    Decision d;
    const double p = packets_.rate > 0 ? packets_.Conforming() : now - 1;
    const double b = bits_.rate > 0 ? bits_.Conforming() : now - 1;
    d.over = p >= now ? kPackets : b >= now ? kBandwidth : kPass;
    d.at = std::max(now, std::max(p, b));
    if (d.over != kPass && (queue <= 0 || d.at - now > queue)) {
      d.drop = true;
      return d;
    }
    packets_.Charge(d.at, packets);
    bits_.Charge(d.at, bytes * 8);
    return d;
  }
  // Schedule() without a queue: kPass (charged) or the limit that dropped it.
  Verdict Admit(double bytes, double packets, double now) { return Schedule(bytes, packets, now, 0).over; }

 private:
  // Rate `r`, qos::kAllowanceDepthSeconds of it deep (at least `min_depth`), full.
  static void Fill(Gcra* g, double r, double min_depth, double now) {
    const double depth = std::max(min_depth, r * qos::kAllowanceDepthSeconds);
    g->Reset(r, depth, depth, now);
  }
  AllowanceLimits limits_;
  Gcra bits_, packets_;
};

}  // namespace vpc
}  // namespace nitride
