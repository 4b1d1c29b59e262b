// PollWindow: how long the VPC worker busy-polls for the next packet before
// it sleeps in epoll_wait, adapted as KVM's halt-polling adapts
// halt_poll_ns. Pure arithmetic on idle times the caller measures (seconds):
// unit-tested without sockets or timers (test/native/vpc-poll.test.ts). Not
// thread-safe: the worker alone uses it.
//
// Why: a sleeping worker is woken by an IPI to a halted vCPU, which on this
// kind of VM costs tens of microseconds, and a ping's round trip waits for
// several such wake-ups. (Measured, README Latency: it changed no figure
// here; the cold hops' own running, not the wake-ups, is most of a sparse
// ping's added RTT.) Polling avoids a wake-up only when the next packet comes
// soon, so the window follows the idle times seen:
// - an idle time within the window: the poll caught it (won), no change;
// - an idle time longer than the window but within `max`: polling a little
//   longer would have caught it: grow to cover it (at least doubled);
// - an idle time beyond `max` (nothing was coming): shrink by an eighth,
//   to zero below `start`. Slowly, not to zero at once: a request/reply
//   pattern (ping, a TCP handshake) alternates one long idle (before the
//   request) with one short one (before the reply), and shrinking to zero on
//   every long idle would leave the window shut at every reply. Each long
//   idle costs one spin of the window, which decays geometrically.
#pragma once

#include <algorithm>

namespace nitride {
namespace vpc {

class PollWindow {
 public:
  static constexpr double kStart = 10e-6;  // the first window after a near miss

  // max: the longest window, seconds; 0 turns polling off.
  explicit PollWindow(double max = 0) : max_(std::max(0.0, max)) {}

  // Seconds to poll before sleeping (0: sleep at once).
  double window() const { return window_; }
  double max() const { return max_; }

  // What an idle episode was: no poll (slept at once), a poll that caught
  // the next event (won: no sleep), a poll that ran out (lost: slept after).
  enum Outcome { kNoPoll = 0, kWon = 1, kLost = 2 };

  // The worker was idle for `idle` seconds, from finding nothing to do to its
  // next event (polling, then sleeping if the window ran out), with the
  // window as it was then.
  Outcome Idle(double idle) {
    if (max_ <= 0 || window_ <= 0) {
      if (max_ > 0 && idle <= max_) Grow(idle);
      return kNoPoll;
    }
    if (idle <= window_) return kWon;
    if (idle > max_) {
      window_ -= window_ / 8;
      if (window_ < kStart) window_ = 0;
    } else {
      Grow(idle);
    }
    return kLost;
  }

 private:
  void Grow(double idle) { window_ = std::min(max_, std::max({kStart, 2 * window_, idle + idle / 4})); }

  double max_;
  double window_ = 0;
};

}  // namespace vpc
}  // namespace nitride
