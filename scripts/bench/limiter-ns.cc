// The limiters' own price per admitted request, in isolation (a benchmark, not a test): what the
// NBD lane adds per READ/WRITE when its volume has a limit that does not bind (clock read +
// IoLimiter::Reserve, native/src/io_limiter.h, nbd_lane.cc's Admit) and what the VPC engine adds
// per frame when the ENI has an allowance that does not bind (Allowance::Schedule, vpc_allowance.h,
// vpc_engine.cc's PassAllowance, and a clock read per batch of frames: of one, 8 and 64), each against the check an unlimited
// volume/ENI costs. One thread, the limiter uncontended; CPU time of this thread
// (CLOCK_THREAD_CPUTIME_ID), so another process on the core does not count; the median of 9
// rounds. Prints one JSON object. Built and run by scripts/bench/limiter-ns.mjs.
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "io_limiter.h"
#include "vpc_allowance.h"

namespace {

double Monotonic() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

double ThreadCpu() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

// Keeps a result alive without a store the loop depends on.
volatile double g_sink;

// ns of thread CPU per call of `op`, median of `rounds` rounds of `n` calls.
template <typename Op>
double NsPerCall(Op op, long n, int rounds = 9) {
  std::vector<double> v;
  for (int r = 0; r < rounds; ++r) {
    double acc = 0;
    const double t0 = ThreadCpu();
    for (long i = 0; i < n; ++i) acc += op(i);
    const double t1 = ThreadCpu();
    g_sink = acc;
    v.push_back((t1 - t0) * 1e9 / n);
  }
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main() {
  using nitride::IoLimiter;
  using nitride::IoLimits;
  using nitride::vpc::Allowance;
  using nitride::vpc::AllowanceLimits;
  const long n = 2000000;

  // bench-block --limits' far limits: 10M IOPS, 100 GiB/s (never binding at these rates).
  IoLimiter none;
  IoLimiter far;
  IoLimits fl;
  fl.iops = 1e7;
  fl.bps = 100.0 * 1024 * 1024 * 1024;
  far.Set(fl, Monotonic());
  const double volume_none = NsPerCall([&](long) { return none.Limited() ? 1.0 : 0.0; }, n);
  // The lane's path for a limited volume: Limited(), a clock read, Reserve (4 KiB and 1 MiB).
  const double volume_far_4k = NsPerCall([&](long) { return far.Limited() ? far.Reserve(4096, Monotonic()) : 0.0; }, n);
  const double volume_far_1m = NsPerCall([&](long) { return far.Limited() ? far.Reserve(1 << 20, Monotonic()) : 0.0; }, n);
  const double clock = NsPerCall([&](long) { return Monotonic(); }, n);

  // bench-net --limits' far allowance: 100 Gbit/s and 100 Mpps, a 20 ms queue (the default).
  Allowance eni_none;
  Allowance eni_far;
  AllowanceLimits al;
  al.bits = 100e9;
  al.packets = 100e6;
  al.queue = 0.02;
  eni_none.Set(AllowanceLimits(), Monotonic());
  eni_far.Set(al, Monotonic());
  const double eni_unlimited = NsPerCall([&](long) { return eni_none.limited() ? 1.0 : 0.0; }, n);
  // A 64-byte frame (106 bytes on the wire) and a 64 KiB GSO super-frame (45 segments).
  const double eni_far_small = NsPerCall([&](long) {
    if (!eni_far.limited()) return 0.0;
    const double now = Monotonic();
    return eni_far.Schedule(106, 1, now, al.queue).at;
  }, n);
  // The engine reads the allowances' clock once per recvmmsg batch (vpc_engine.cc AllowanceNow):
  // per frame in a batch of 8 and of 64 64-byte frames.
  double batch_now = 0;
  const auto batched = [&](long every) {
    return NsPerCall([&](long i) {
      if (!eni_far.limited()) return 0.0;
      if (i % every == 0) batch_now = Monotonic();
      return eni_far.Schedule(106, 1, batch_now, al.queue).at;
    }, n);
  };
  const double eni_far_small_8 = batched(8);
  const double eni_far_small_64 = batched(64);
  const double eni_far_gso = NsPerCall([&](long) {
    if (!eni_far.limited()) return 0.0;
    const double now = Monotonic();
    return eni_far.Schedule(65536 + 44 * 66, 45, now, al.queue).at;
  }, n);

  std::printf(
      "{\"calls\":%ld,\"clockNs\":%.2f,\"volumeUnlimitedNs\":%.2f,\"volumeFar4kNs\":%.2f,\"volumeFar1mNs\":%.2f,"
      "\"eniUnlimitedNs\":%.2f,\"eniFarSmallNs\":%.2f,\"eniFarSmallBatch8Ns\":%.2f,\"eniFarSmallBatch64Ns\":%.2f,"
      "\"eniFarGsoNs\":%.2f}\n",
      n, clock, volume_none, volume_far_4k, volume_far_1m, eni_unlimited, eni_far_small, eni_far_small_8, eni_far_small_64,
      eni_far_gso);
  return 0;
}
