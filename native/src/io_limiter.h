// IoLimiter: the provisioned IOPS and throughput of one volume, shared by
// every connection of the volume (each NbdLane holds a shared_ptr; the JS
// event-loop plane calls the same object), so multi-conn does not multiply
// the limit. Pure arithmetic on a clock the caller passes in: unit-tested
// with an injected clock (test/native/io-limiter.test.ts).
//
// Each limit is one or two token buckets (gcra.h):
//   base   rate = the provisioned rate, depth = kBucketDepthSeconds of it
//          (at least one I/O: 1 op, 256 KiB), as QEMU's throttle defaults to:
//          a waiter that wakes late (a loaded host) catches up instead of
//          losing the rate;
//   burst  (optional, gp2-style credits) the base bucket runs at the burst
//          rate instead, and a credit bucket refilled at the provisioned rate
//          with the given ceiling (full at creation) is charged too: bursts
//          last while credits remain, then the provisioned rate holds.
// A request reserves its tokens at once, in arrival order, and gets the time
// it may start (a debt model: a large I/O goes first and the next ones wait
// for the tokens it took), so waiting requests need no polling and the rate
// is exact however late the waiter wakes. I/O counting is EBS's: up to
// kIoCountUnitBytes counts as one I/O, larger as ceil(len / unit).
//
// Throttled time (EBS's ebs_volume_performance_exceeded_iops/_tp): the union
// of the intervals [arrival, start] of requests delayed, charged to the limit
// that set the start (IOPS on a tie), counted up to now.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <mutex>

#include "gcra.h"
#include "shared_constants.h"

namespace nitride {

// Rates per second, ceilings in tokens (I/Os or bytes); 0: not set.
struct IoLimits {
  double iops = 0;
  double bps = 0;
  double burst_iops = 0;
  double burst_io_credits = 0;
  double burst_bps = 0;
  double burst_bytes = 0;
};

class IoLimiter {
 public:
  static double IoCount(uint64_t len) {
    return len <= qos::kIoCountUnitBytes ? 1.0 : std::ceil(static_cast<double>(len) / qos::kIoCountUnitBytes);
  }

  // Replaces the limits (live: volume modify). Tokens carry over, capped by
  // the new ceilings; debts are forgiven (requests already waiting are
  // re-reserved by their lanes, which see the generation change).
  void Set(const IoLimits& l, double now) {
    std::lock_guard<std::mutex> lock(mu_);
    SetPair(&iops_, &iops_credit_, l.iops, l.burst_iops, l.burst_io_credits, 1.0, now);
    SetPair(&tp_, &tp_credit_, l.bps, l.burst_bps, l.burst_bytes, static_cast<double>(qos::kIoCountUnitBytes), now);
    for (Interval* t : {&throttled_iops_, &throttled_tp_}) t->Truncate(now);
    limits_ = l;
    limited_.store(iops_.rate > 0 || tp_.rate > 0, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }

  IoLimits Limits() {
    std::lock_guard<std::mutex> lock(mu_);
    return limits_;
  }

  // Cheap check for the unlimited case (no lock).
  bool Limited() const { return limited_.load(std::memory_order_acquire); }
  uint64_t Generation() const { return generation_.load(std::memory_order_acquire); }

  // Reserves a request of `len` bytes arriving at `now`; returns when it may
  // start (<= now: at once).
  double Reserve(uint64_t len, double now) {
    std::lock_guard<std::mutex> lock(mu_);
    const double ios = IoCount(len);
    const double bytes = static_cast<double>(len);
    const double iops_at = std::max(iops_.Conforming(), iops_credit_.Conforming());
    const double tp_at = std::max(tp_.Conforming(), tp_credit_.Conforming());
    const double start = std::max(now, std::max(iops_at, tp_at));
    iops_.Charge(start, ios);
    iops_credit_.Charge(start, ios);
    tp_.Charge(start, bytes);
    tp_credit_.Charge(start, bytes);
    // The wait is the binding limit's (a bucket of the other limit may only
    // look late because the previous request waited for this one).
    if (start > now) (iops_at >= tp_at ? throttled_iops_ : throttled_tp_).Add(now, start);
    return start;
  }

  // Seconds throttled by the IOPS and by the throughput limits, up to `now`.
  void Throttled(double now, double* iops, double* tp) {
    std::lock_guard<std::mutex> lock(mu_);
    *iops = throttled_iops_.Upto(now);
    *tp = throttled_tp_.Upto(now);
  }

  // Burst credits left (I/Os, bytes); -1 without a burst bucket.
  void Credits(double now, double* ios, double* bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    *ios = iops_credit_.rate > 0 ? iops_credit_.Level(now) : -1;
    *bytes = tp_credit_.rate > 0 ? tp_credit_.Level(now) : -1;
  }

 private:
  // The union of intervals that start in non-decreasing order.
  struct Interval {
    double total = 0;  // including the part after `until`'s now
    double until = 0;
    void Add(double from, double to) {
      total += std::max(0.0, to - std::max(from, until));
      until = std::max(until, to);
    }
    double Upto(double now) const { return total - std::max(0.0, until - now); }
    void Truncate(double now) {
      total = Upto(now);
      until = std::min(until, now);
    }
  };

  // Base bucket (at the burst rate if there is a burst) and credit bucket.
  static void SetPair(Gcra* base, Gcra* credit, double rate, double burst_rate, double credits, double one, double now) {
    const bool burst = rate > 0 && burst_rate > rate && credits > 0;
    const double base_rate = burst ? burst_rate : rate;
    const double depth = std::max(one, base_rate * qos::kBucketDepthSeconds);
    base->Reset(base_rate, depth, base->rate > 0 ? base->Level(now) : depth, now);
    credit->Reset(burst ? rate : 0, credits, credit->rate > 0 ? credit->Level(now) : credits, now);
  }

  std::mutex mu_;
  IoLimits limits_;
  Gcra iops_, iops_credit_, tp_, tp_credit_;
  Interval throttled_iops_, throttled_tp_;
  std::atomic<bool> limited_{false};
  std::atomic<uint64_t> generation_{0};
};

}  // namespace nitride
