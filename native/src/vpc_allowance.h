// Allowance: an ENI's bandwidth and packet allowance in one direction (ENA's
// bw_in/bw_out/pps allowances), a policer on the engine thread. Pure
// arithmetic on a clock the caller passes in (seconds): unit-tested without
// timers (test/native/vpc-allowance.test.ts). Not thread-safe: the engine
// touches it with mu_ held (the worker per batch, UpdatePort from JS).
//
// Two token buckets (gcra.h): bits and packets, each
// `rate` per second and qos::kAllowanceDepthSeconds of it deep (at least one
// 64 KiB GSO super-frame / its 64 segments). A frame passes when both
// buckets hold any tokens, and is then charged in full, so a super-frame is
// never refused for being larger than what is left: the bucket goes into
// debt by up to one frame and the long-run rate is still exact. Over the
// limit the frame is dropped (as ENA does); the depth is what lets TCP reach
// the rate through a dropping policer (ENI_ALLOWANCE_DEPTH_SECONDS, vpc.ts).
#pragma once

#include <algorithm>

#include "gcra.h"
#include "shared_constants.h"

namespace nitride {
namespace vpc {

// Per second; 0: unlimited.
struct AllowanceLimits {
  double bits = 0;
  double packets = 0;
  bool operator==(const AllowanceLimits& o) const { return bits == o.bits && packets == o.packets; }
  bool operator!=(const AllowanceLimits& o) const { return !(*this == o); }
};

class Allowance {
 public:
  enum Verdict { kPass = 0, kBandwidth = 1, kPackets = 2 };
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

  // A frame of `bytes` (`packets` segments for a GSO super-frame) at `now`:
  // charged and kPass, or dropped for the packet limit (checked first) or
  // the bandwidth limit.
  Verdict Admit(double bytes, double packets, double now) {
    if (!packets_.Conforms(now)) return kPackets;
    if (!bits_.Conforms(now)) return kBandwidth;
    packets_.Charge(now, packets);
    bits_.Charge(now, bytes * 8);
    return kPass;
  }

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
