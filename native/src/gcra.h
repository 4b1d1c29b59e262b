// Gcra: one token bucket in GCRA form (virtual scheduling): its rate, its
// depth in seconds `tau` and the theoretical arrival time `tat`; it holds
// (now + tau - tat) * rate tokens. Pure arithmetic on a clock the caller
// passes in (seconds). Shared by the volume limiter (io_limiter.h: a request
// waits until Conforming()) and the ENI allowance (vpc_allowance.h: a frame
// is dropped unless Conforms(now)).
#pragma once

#include <algorithm>

namespace nitride {

struct Gcra {
  double rate = 0;  // tokens per second; 0: off
  double tau = 0;
  double tat = 0;

  // When a request may start (0 when off).
  double Conforming() const { return rate > 0 ? tat - tau : 0; }
  // Whether it holds any token at `now`.
  bool Conforms(double now) const { return rate <= 0 || tat < now + tau; }
  // Takes `cost` tokens for a request starting at `start` (into debt if it must).
  void Charge(double start, double cost) {
    if (rate > 0) tat = std::max(tat, start) + cost / rate;
  }
  double Level(double now) const { return rate > 0 ? std::max(0.0, std::min(tau, now + tau - tat)) * rate : 0; }
  // Rate `r`, `ceiling` tokens deep, holding `level` of them at `now`.
  void Reset(double r, double ceiling, double level, double now) {
    rate = r;
    tau = r > 0 ? ceiling / r : 0;
    tat = r > 0 ? now + tau - std::min(level, ceiling) / r : 0;
  }
};

}  // namespace nitride
