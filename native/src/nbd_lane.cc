// NbdLane: the native data plane of one NBD connection in transmission.
//
// Pipeline (one thread per connection; the JS connection keeps the handshake,
// the one validation gate, every error reply and every slow command):
//
//   poll(socket, wake eventfd) -> recv into the input buffer (or straight into
//   a large WRITE's payload buffer) -> per request header:
//     fast path   READ/WRITE, unit-aligned, in range, no flags (DF allowed on
//                 READ): preadv2(RWF_NOWAIT) + XTS decrypt, or XTS encrypt +
//                 pwrite, reply queued here; requests over kInlineMax, and
//                 reads the page cache cannot serve now, on two workers;
//     forwarded   everything else, and any fast-path attempt that did not
//                 complete (page-cache miss, I/O error): the header and
//                 payload go to JS as a 'request' event; JS runs it through
//                 validateRequest and the backend and hands back the reply
//                 bytes with send(), which this thread writes;
//   -> replies of a batch leave in one sendmsg.
//
// Why a thread of its own: at queue depth 1 a request's round trip is mostly
// wake-ups. A thread sleeping in poll() is woken synchronously by the
// client's write (the scheduler may run it on the client's CPU), whereas
// libuv's epoll wake-up is not: measured on this 2-vCPU VM, 4 KiB reads at QD1
// through the event loop ran at 3.5-6k IOPS unpinned and 25.7k with client and
// server pinned to one CPU. The loop's own cost goes too (no JS per request).
//
// Consistency with the JS path: both use the same file (this lane holds its
// own dup of the descriptor) and the same key (XtsKey shared_ptr). The JS path
// serialises read-modify-write of partial data units with its range lock;
// the lane only touches whole units, so a lane request can only race a JS one
// that overlaps it, which NBD leaves undefined anyway, and XTS ciphertext of
// an unchanged 16-byte block does not change, so even then no bytes outside
// the overlap can tear.
//
// RBD images: with `rbdImage` instead of `fileFd`, a fast-path READ or WRITE
// is a librbd aio request (after XTS encryption for writes: Ceph sees
// ciphertext only) whose completion, on a librbd thread, decrypts a read and
// sends the reply itself when nothing is queued ahead of it, else queues it
// here (see SendNow); up to kMaxRbdInFlight at once. A failed one goes to
// JS like a failed file request (JS retries through the backend and reports).
//
// Lifetime: JS calls close() once it has no forwarded request left (DISC,
// client EOF, daemon stop) or at once (protocol violation). The thread then
// flushes queued replies (giving up after kCloseFlushMs without progress),
// shuts the socket down for writing after a DISC, closes its descriptors,
// emits 'exit' and lets go of the key.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "io_limiter.h"
#include "nitride.h"
#include "rbd.h"
#include "shared_constants.h"

namespace nitride {

namespace {

// Wire constants (NBD protocol document, "Transmission phase") and the limits
// shared with src/nbd, generated from its constants.
using namespace nbd;

// Input buffer: every request up to this size (header + payload) is parsed in
// place; larger WRITE payloads are received into a buffer of their own.
constexpr size_t kInputBytes = 256 * 1024;
// Reading pauses while this much reply data waits for the client, or while
// kMaxForwarded forwarded requests wait for JS (the JS path's own limit).
constexpr size_t kMaxQueuedOutput = 8u << 20;
// After close(), how long queued replies may make no progress before the
// thread gives up on a client that does not read.
constexpr int kCloseFlushMs = 10000;
constexpr size_t kMaxIov = 64;
// Requests up to this size are done on the lane thread itself (latency);
// larger ones go to the lane's workers, so that the pread/pwrite and crypto of
// bulk transfers overlap with each other and with the socket I/O.
constexpr uint32_t kInlineMax = 128 * 1024;
constexpr size_t kWorkers = 2;
// Reading pauses while this many requests wait for a worker.
constexpr size_t kMaxQueuedJobs = 16;
// Reading pauses while this many RBD requests are in flight.
constexpr size_t kMaxRbdInFlight = 128;
// Longest busy-poll for the next request (SpinForInput).
constexpr double kSpinSeconds = 50e-6;
// Reading pauses while this many requests wait for the volume's limiter.
constexpr size_t kMaxThrottled = 64;
// While requests wait for the limiter, the thread wakes at least this often
// to see a live change of the limits (volume modify).
constexpr double kThrottleRecheckSeconds = 0.1;
// While the first waiting request is due within this, the thread does not wake
// for input: it reads the socket when it wakes to release that request (a READ
// or WRITE arriving meanwhile would queue behind it anyway). Waking for the
// client's next request as well as for each release was two sleeps per I/O at
// a binding limit. The bound is what any other command (FLUSH) may wait extra.
constexpr double kDeferInputSeconds = 2e-3;

uint16_t Load16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t Load32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}
uint64_t Load64(const uint8_t* p) { return static_cast<uint64_t>(Load32(p)) << 32 | Load32(p + 4); }
void Store16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void Store32(uint8_t* p, uint32_t v) {
  for (int i = 3; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
void Store64(uint8_t* p, uint64_t v) {
  Store32(p, static_cast<uint32_t>(v >> 32));
  Store32(p + 4, static_cast<uint32_t>(v));
}

struct Header {
  uint16_t flags = 0;
  uint16_t type = 0;
  uint64_t cookie = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
};

// Size of a successful reply's header: a simple reply, or one structured chunk
// (NONE, or OFFSET_DATA whose offset field precedes the data).
size_t ReplyHeaderBytes(bool structured, bool data) {
  return structured ? kChunkHeaderBytes + (data ? 8 : 0) : kSimpleReplyBytes;
}

// Writes that header for request `h` (with data: h.length bytes follow).
void PutReplyHeader(uint8_t* b, const Header& h, bool structured, bool data) {
  if (!structured) {
    Store32(b, kSimpleReplyMagic);
    Store32(b + 4, 0);  // error
    Store64(b + 8, h.cookie);
    return;
  }
  Store32(b, kStructuredReplyMagic);
  Store16(b + 4, kReplyFlagDone);
  Store16(b + 6, data ? kReplyTypeOffsetData : kReplyTypeNone);
  Store64(b + 8, h.cookie);
  Store32(b + 16, data ? h.length + 8 : 0);
  if (data) Store64(b + 20, h.offset);
}

double MonotonicSeconds() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}


// Bytes queued for the socket.
struct Chunk {
  std::unique_ptr<uint8_t[]> data;
  size_t len = 0;
  size_t sent = 0;
  size_t pooled = 0;  // capacity, if data came from the BufferPool
};

// Recycles large buffers (payloads, read replies). A fresh 1 MiB allocation
// is fresh pages: 256 page faults, each zeroing a page, per request, which is
// as much CPU as the encryption. Buffers are grouped by size rounded up to
// kGrain; at most kKept are kept. Thread-safe.
class BufferPool {
 public:
  static constexpr size_t kPooledMin = 128 * 1024;
  static constexpr size_t kGrain = 64 * 1024;
  static constexpr size_t kKept = 24;

  // A buffer of at least n bytes; *cap = its capacity if it is to be given back (else 0).
  std::unique_ptr<uint8_t[]> Take(size_t n, size_t* cap) {
    if (n < kPooledMin) {
      *cap = 0;
      return std::unique_ptr<uint8_t[]>(new uint8_t[n]);
    }
    size_t c = (n + kGrain - 1) / kGrain * kGrain;
    *cap = c;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = free_.begin(); it != free_.end(); ++it) {
        if (it->first == c) {
          std::unique_ptr<uint8_t[]> b = std::move(it->second);
          free_.erase(it);
          return b;
        }
      }
    }
    return std::unique_ptr<uint8_t[]>(new uint8_t[c]);
  }

  void Give(std::unique_ptr<uint8_t[]> b, size_t cap) {
    if (!b || cap == 0) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.size() >= kKept) free_.erase(free_.begin());  // the oldest
    free_.emplace_back(cap, std::move(b));
  }

 private:
  std::mutex mu_;
  std::vector<std::pair<size_t, std::unique_ptr<uint8_t[]>>> free_;
};

struct Event {
  enum Kind { kRequest, kEnd, kExit } kind = kRequest;
  Header h;
  std::unique_ptr<uint8_t[]> payload;  // forwarded WRITE payload (h.length bytes)
  bool discarded = false;               // WRITE payload over maxPayload, drained
  std::string reason;                   // kEnd: eof | disc | violation | error
  std::string message;
};

struct Config {
  int sock = -1;  // our dups: closed by the thread when it ends
  int file = -1;
  std::shared_ptr<RbdImage> rbd;  // instead of file
  std::shared_ptr<XtsKey> key;  // null: plain (unencrypted) file
  uint64_t unit = 512;
  uint64_t size = 0;
  uint64_t max_payload = kMaxPayload;
  uint64_t max_discard = kMaxWriteDiscard;
  bool structured = false;
  bool read_only = false;
  std::vector<double> buckets;  // latency bucket upper bounds, seconds
  std::vector<uint8_t> initial;  // request bytes read before the lane started
  std::shared_ptr<IoLimiter> limiter;  // the volume's, shared with its other connections
};

Napi::Object EventObject(Napi::Env env, Event& ev) {
  Napi::Object o = Napi::Object::New(env);
  switch (ev.kind) {
    case Event::kRequest:
      o.Set("kind", "request");
      o.Set("type", ev.h.type);
      o.Set("flags", ev.h.flags);
      o.Set("cookie", Napi::BigInt::New(env, ev.h.cookie));
      o.Set("offset", Napi::BigInt::New(env, ev.h.offset));
      o.Set("length", static_cast<double>(ev.h.length));
      if (ev.discarded) o.Set("payloadDiscarded", true);
      else if (ev.h.type == kCmdWrite) {
        if (ev.payload) {
          uint8_t* p = ev.payload.release();
          o.Set("payload", Napi::Buffer<uint8_t>::New(env, p, ev.h.length, [](Napi::Env, uint8_t* d) { delete[] d; }));
        } else {
          o.Set("payload", Napi::Buffer<uint8_t>::New(env, 0));
        }
      }
      break;
    case Event::kEnd:
      o.Set("kind", "end");
      o.Set("reason", ev.reason);
      o.Set("message", ev.message);
      break;
    case Event::kExit:
      o.Set("kind", "exit");
      break;
  }
  return o;
}

// Per-command counters for the fast path, in the JS ExportIoStats layout:
// [ops, bytes, latencySumSeconds, bucket 0..n-1, +Inf] for READ, then WRITE.
class LaneStats {
 public:
  explicit LaneStats(const std::vector<double>& bounds) : bounds_(bounds), v_(2 * Stride(), 0.0) {}
  size_t Stride() const { return 3 + bounds_.size() + 1; }
  void Record(int which, double bytes, double seconds) {
    size_t i = 0;
    while (i < bounds_.size() && seconds > bounds_[i]) ++i;
    std::lock_guard<std::mutex> lock(mu_);
    double* s = v_.data() + which * Stride();
    s[0] += 1;
    s[1] += bytes;
    s[2] += seconds;
    s[3 + i] += 1;
  }
  // Moves the counters out (JS adds them to the export's totals).
  std::vector<double> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<double> out(v_);
    std::fill(v_.begin(), v_.end(), 0.0);
    return out;
  }

 private:
  const std::vector<double> bounds_;
  std::mutex mu_;
  std::vector<double> v_;
};

class Lane {
 public:
  Lane(Config cfg, Napi::ThreadSafeFunction tsfn, int wake)
      : cfg_(std::move(cfg)), stats_(cfg_.buckets), tsfn_(tsfn), wake_(wake) {}
  ~Lane() {
    if (wake_ >= 0) close(wake_);
  }
  Lane(const Lane&) = delete;
  Lane& operator=(const Lane&) = delete;

  // ---- JS thread ---------------------------------------------------------

  // One forwarded request's reply (one or more buffers, written together).
  void Send(std::vector<std::pair<const uint8_t*, size_t>> parts) {
    size_t total = 0;
    for (auto& p : parts) total += p.second;
    Chunk c;
    c.data.reset(new uint8_t[total]);
    c.len = total;
    size_t at = 0;
    for (auto& p : parts) {
      memcpy(c.data.get() + at, p.first, p.second);
      at += p.second;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (forwarded_ > 0) forwarded_--;
    if (exited_) return;
    js_out_.push_back(std::move(c));
    WakeLocked();
  }

  void StopReading() {
    std::lock_guard<std::mutex> lock(mu_);
    stop_reading_ = true;
    WakeLocked();
  }

  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    close_requested_ = true;
    WakeLocked();
  }

  std::vector<double> TakeStats() { return stats_.Take(); }

  // Moves the pending events out (called by the ThreadSafeFunction on the JS thread).
  std::deque<Event> TakeEvents() {
    std::lock_guard<std::mutex> lock(mu_);
    std::deque<Event> out;
    out.swap(events_);
    return out;
  }

  static void Start(const std::shared_ptr<Lane>& self) {
    std::thread([self] { self->Run(); }).detach();
  }

 private:
  // ---- lane thread -------------------------------------------------------

  // Under mu_: the thread closes the eventfd when it ends (so that no descriptor
  // waits for the JS object's garbage collection).
  void WakeLocked() {
    if (wake_ < 0) return;
    uint64_t one = 1;
    ssize_t r;
    do r = write(wake_, &one, sizeof one);
    while (r < 0 && errno == EINTR);
  }

  void Emit(Event ev) {
    bool first;
    {
      std::lock_guard<std::mutex> lock(mu_);
      first = events_.empty();
      events_.push_back(std::move(ev));
    }
    if (first) {
      tsfn_.NonBlockingCall([this](Napi::Env env, Napi::Function onEvent) {
        for (Event& ev : TakeEvents()) {
          Napi::HandleScope scope(env);
          try {
            onEvent.Call({EventObject(env, ev)});
          } catch (const Napi::Error& e) {
            // The handler must not throw; report it like node reports an uncaught exception.
            napi_fatal_exception(env, e.Value());
          }
        }
      });
    }
  }

  void End(const char* reason, std::string message) {
    reading_done_ = true;
    if (strcmp(reason, "disc") != 0) client_gone_ = true;
    if (ended_) return;
    ended_ = true;
    Event ev;
    ev.kind = Event::kEnd;
    ev.reason = reason;
    ev.message = std::move(message);
    Emit(std::move(ev));
  }

  void Run() {
    pthread_setname_np(pthread_self(), "nitride-nbd");  // shown by top -H, ps -L
    in_cap_ = std::max(kInputBytes, cfg_.initial.size());
    in_.reset(new uint8_t[in_cap_]);
    memcpy(in_.get(), cfg_.initial.data(), cfg_.initial.size());
    in_end_ = cfg_.initial.size();
    std::vector<uint8_t>().swap(cfg_.initial);

    double flush_deadline = 0;
    size_t flushed_at_deadline = 0;
    for (;;) {
      bool stop_reading, close_requested;
      size_t forwarded;
      // Counted before the replies are taken: a job queues its reply before it stops counting.
      const size_t jobs = workers_.empty() && !cfg_.rbd ? 0 : JobsOutstanding();
      {
        std::lock_guard<std::mutex> send(send_mu_);  // out_ changes under it (see SendNow)
        std::lock_guard<std::mutex> lock(mu_);
        while (!js_out_.empty()) {
          out_bytes_ += js_out_.front().len - js_out_.front().sent;
          out_.push_back(std::move(js_out_.front()));
          js_out_.pop_front();
        }
        stop_reading = stop_reading_;
        close_requested = close_requested_;
        forwarded = forwarded_;
      }
      if (stop_reading || close_requested) reading_done_ = true;
      if (crypto_failed_.load() && !ended_) End("error", "AES-256-XTS failed; the request was not written");
      ReleaseThrottled();
      if (!reading_done_) ProcessInput();
      Flush();
      // With jobs outstanding, their replies come next: the final flush waits for them.
      if (close_requested && jobs == 0 && (throttled_.empty() || broken_)) {
        if (out_.empty() || broken_) break;
        double now = MonotonicSeconds();
        if (flush_deadline == 0 || total_sent_ != flushed_at_deadline) {
          flush_deadline = now + kCloseFlushMs / 1000.0;
          flushed_at_deadline = total_sent_;
        } else if (now >= flush_deadline) {
          break;
        }
      }
      bool want_in = !reading_done_ && out_bytes_ < kMaxQueuedOutput && forwarded < kMaxForwarded && jobs < (cfg_.rbd ? kMaxRbdInFlight : kMaxQueuedJobs) &&
                     throttled_.size() < kMaxThrottled;
      // Not while the last deferred read filled its buffer: more may wait (a large WRITE's payload).
      const double due = throttled_.empty() ? 0 : std::max(0.0, throttled_.front().at - MonotonicSeconds());
      const bool defer_in = want_in && !input_pending_ && !throttled_.empty() && due < kDeferInputSeconds;
      if (defer_in) want_in = false;
      bool want_out = !out_.empty() && !broken_;
      struct pollfd p[2];
      p[0].fd = want_in || (want_out && !hup_) ? cfg_.sock : -1;
      p[0].events = static_cast<short>((want_in ? POLLIN : 0) | (want_out ? POLLOUT : 0));
      p[0].revents = 0;
      p[1].fd = wake_;
      p[1].events = POLLIN;
      p[1].revents = 0;
      // Not on RBD: a librbd request's own threads need the core a spin would take (2-vCPU VM, 4 KiB
      // writes QD1 through librbd's cache: the lane thread's CPU per I/O fell by ~60 µs without it).
      if (!cfg_.rbd && want_in && !want_out && state_ == kHeader && jobs == 0 && forwarded == 0 && throttled_.empty() && SpinForInput()) continue;
      // Sleep until the first waiting request is due (to the microsecond: at
      // 1000 IOPS a slot is 1 ms), and no longer than the recheck interval.
      double timeout = close_requested ? 0.2 : -1;
      if (!throttled_.empty()) {
        timeout = std::min(timeout < 0 ? kThrottleRecheckSeconds : timeout, std::min(due, kThrottleRecheckSeconds));
      }
      struct timespec ts;
      ts.tv_sec = static_cast<time_t>(timeout);
      ts.tv_nsec = static_cast<long>((timeout - static_cast<double>(ts.tv_sec)) * 1e9);
      int n = ppoll(p, 2, timeout < 0 ? nullptr : &ts, nullptr);
      if (n < 0 && errno != EINTR) {
        End("error", std::string("poll: ") + strerror(errno));
        broken_ = true;
        break;
      }
      if (defer_in) input_pending_ = ReadSocket();
      if (n <= 0) continue;
      if (p[1].revents & POLLIN) {
        uint64_t v;
        ssize_t r;
        do r = read(wake_, &v, sizeof v);
        while (r < 0 && errno == EINTR);
      }
      if (p[0].revents & (POLLHUP | POLLERR)) hup_ = true;
      if (want_in && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
        if (last_idle_ > 0) {
          // Slept until this input: was the gap short enough to be worth spinning for?
          double gap = MonotonicSeconds() - last_idle_;
          spin_gap_ = gap < kSpinSeconds ? gap : 2 * kSpinSeconds;
          last_idle_ = 0;
        }
        input_pending_ = ReadSocket();
      }
    }

    StopWorkers();
    if (graceful_ && !broken_) shutdown(cfg_.sock, SHUT_WR);
    close(cfg_.sock);
    if (cfg_.file >= 0) close(cfg_.file);
    cfg_.rbd.reset();
    cfg_.key.reset();
    cfg_.limiter.reset();
    {
      std::lock_guard<std::mutex> lock(mu_);
      exited_ = true;
      js_out_.clear();
      close(wake_);
      wake_ = -1;
    }
    Event ev;
    ev.kind = Event::kExit;
    Emit(std::move(ev));
    tsfn_.Release();
  }

  // Busy-polls the socket for the next request for a short while before the
  // thread sleeps, while requests keep arriving within that window (a client
  // waiting on each reply, QD1): sleeping costs two cross-CPU wake-ups per
  // round trip here. Gated by the last gaps, so an idle or slow client costs
  // one short spin, not a spinning core. True if input arrived.
  bool SpinForInput() {
    if (spin_gap_ > kSpinSeconds) {
      // Sleep; remember when, to measure the gap to the next request.
      last_idle_ = MonotonicSeconds();
      return false;
    }
    double start = MonotonicSeconds();
    for (;;) {
      size_t before = in_end_;
      ReadSocket();
      double now = MonotonicSeconds();
      if (in_end_ != before || reading_done_) {
        spin_gap_ = 0.75 * spin_gap_ + 0.25 * (now - start);
        return true;
      }
      if (now - start > kSpinSeconds) {
        spin_gap_ = 2 * kSpinSeconds;  // nothing came: stop spinning until a fast gap is seen again
        last_idle_ = now;
        return false;
      }
      __builtin_ia32_pause();
    }
  }

  // Receives what the socket has into the current target. True if that
  // filled the target (more may be waiting).
  bool ReadSocket() {
    uint8_t* to;
    size_t room;
    if (state_ == kPayload) {
      to = payload_.get() + payload_have_;
      room = pending_.length - payload_have_;
    } else if (state_ == kDiscard) {
      to = in_.get();  // empty while discarding
      room = static_cast<size_t>(std::min<uint64_t>(in_cap_, discard_left_));
    } else {
      if (in_end_ == in_cap_ && in_start_ > 0) Compact();
      to = in_.get() + in_end_;
      room = in_cap_ - in_end_;
      // After a large WRITE the next request is likely one too: take its
      // header alone, so that its payload lands in its own buffer rather than
      // up to kInputBytes of it here and then a copy (a quarter of each 1 MiB
      // payload copied once more). One extra recv if the guess is wrong.
      if (large_write_next_ && in_start_ == in_end_) room = std::min(room, kRequestBytes);
    }
    if (room == 0) return false;
    ssize_t r;
    do r = recv(cfg_.sock, to, room, MSG_DONTWAIT);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
      End("error", std::string("recv: ") + strerror(errno));
      return false;
    }
    if (r == 0) {
      End("eof", "the client closed the connection");
      return false;
    }
    size_t got = static_cast<size_t>(r);
    if (state_ == kPayload) payload_have_ += got;
    else if (state_ == kDiscard) discard_left_ -= got;
    else in_end_ += got;
    return got == room;
  }

  void Compact() {
    size_t left = in_end_ - in_start_;
    if (in_start_ > 0 && left > 0) memmove(in_.get(), in_.get() + in_start_, left);
    in_start_ = 0;
    in_end_ = left;
  }

  void ProcessInput() {
    while (!reading_done_) {
      if (state_ == kPayload) {
        if (payload_have_ < pending_.length) return;
        state_ = kHeader;
        Admit(pending_, payload_.get());
        continue;
      }
      if (state_ == kDiscard) {
        if (discard_left_ > 0) return;
        state_ = kHeader;
        Forward(pending_, nullptr, true);
        continue;
      }
      if (throttled_.size() >= kMaxThrottled) break;
      size_t avail = in_end_ - in_start_;
      if (avail < kRequestBytes) break;
      uint8_t* p = in_.get() + in_start_;
      if (Load32(p) != kRequestMagic) {
        char msg[64];
        snprintf(msg, sizeof msg, "bad request magic 0x%08x", Load32(p));
        End("violation", msg);
        return;
      }
      large_write_next_ = false;
      Header h;
      h.flags = Load16(p + 4);
      h.type = Load16(p + 6);
      h.cookie = Load64(p + 8);
      h.offset = Load64(p + 16);
      h.length = Load32(p + 24);
      if (h.type == kCmdWrite) {
        size_t body = avail - kRequestBytes;
        if (h.length > cfg_.max_payload) {
          // Drain the payload to stay in sync; JS answers EINVAL.
          if (h.length > cfg_.max_discard) {
            End("violation", "WRITE payload of " + std::to_string(h.length) + " bytes is beyond what is drained");
            return;
          }
          size_t take = std::min<size_t>(body, h.length);
          in_start_ += kRequestBytes + take;
          discard_left_ = h.length - take;
          pending_ = h;
          state_ = kDiscard;
          Compact();
          continue;
        }
        if (body >= h.length) {
          in_start_ += kRequestBytes + h.length;
          Admit(h, p + kRequestBytes);
          continue;
        }
        if (kRequestBytes + h.length <= in_cap_) {
          if (in_start_ + kRequestBytes + h.length > in_cap_) Compact();
          break;  // wait for the rest in the input buffer
        }
        // A large payload: received straight into a buffer of its own.
        large_write_next_ = true;
        if (payload_cap_ < h.length) {
          pool_.Give(std::move(payload_), payload_pooled_);
          payload_ = pool_.Take(h.length, &payload_pooled_);
          payload_cap_ = payload_pooled_ ? payload_pooled_ : h.length;
        }
        memcpy(payload_.get(), p + kRequestBytes, body);
        payload_have_ = body;
        in_start_ = in_end_ = 0;
        pending_ = h;
        state_ = kPayload;
        continue;
      }
      in_start_ += kRequestBytes;
      if (h.type == kCmdDisc) {
        graceful_ = true;
        End("disc", "the client disconnected (NBD_CMD_DISC)");
        return;
      }
      Admit(h, nullptr);
    }
    if (in_start_ == in_end_) in_start_ = in_end_ = 0;
  }

  bool FastPathEligible(const Header& h) const {
    if (h.length == 0 || h.length > cfg_.max_payload) return false;
    if (h.offset % cfg_.unit != 0 || h.length % cfg_.unit != 0) return false;
    if (h.offset > cfg_.size || h.length > cfg_.size - h.offset) return false;
    if (h.type == kCmdRead) return h.flags == 0 || (h.flags == kCmdFlagDf && cfg_.structured);
    if (h.type == kCmdWrite) return h.flags == 0 && !cfg_.read_only;
    return false;
  }

  // READ and WRITE go through the volume's limiter: at once if it has the
  // tokens and nothing of this lane waits, else they wait here, in order.
  void Admit(const Header& h, uint8_t* payload) {
    IoLimiter* limiter = cfg_.limiter.get();
    if ((h.type != kCmdRead && h.type != kCmdWrite) || limiter == nullptr || (!limiter->Limited() && throttled_.empty())) {
      Dispatch(h, payload);
      return;
    }
    Throttled t;
    t.h = h;
    t.generation = limiter->Generation();
    double now = MonotonicSeconds();
    t.at = limiter->Limited() ? limiter->Reserve(h.length, now) : now;
    if (t.at <= now && throttled_.empty()) {
      Dispatch(h, payload);
      return;
    }
    if (payload != nullptr && h.length > 0) t.payload = OwnPayload(h, payload, &t.pooled);
    throttled_.push_back(std::move(t));
  }

  // Dispatches the waiting requests that are due. After a live change of the
  // limits, the waiting requests are reserved again under the new ones, in order.
  void ReleaseThrottled() {
    if (throttled_.empty()) return;
    IoLimiter& limiter = *cfg_.limiter;
    double now = MonotonicSeconds();
    uint64_t generation = limiter.Generation();
    if (throttled_.front().generation != generation) {
      for (Throttled& t : throttled_) {
        t.generation = generation;
        t.at = limiter.Limited() ? limiter.Reserve(t.h.length, now) : now;
      }
    }
    while (!throttled_.empty() && throttled_.front().at <= now) {
      Throttled t = std::move(throttled_.front());
      throttled_.pop_front();
      // Once the client is gone there is nobody to answer.
      if (!client_gone_) Dispatch(t.h, t.payload.get());  // a job or JS gets a copy
      pool_.Give(std::move(t.payload), t.pooled);
    }
  }

  void Dispatch(const Header& h, uint8_t* payload) {
    if (!FastPathEligible(h)) {
      Forward(h, payload, false);
      return;
    }
    if (cfg_.rbd) {
      SubmitRbd(h, payload);
      return;
    }
    if (h.length > kInlineMax) {
      Job job;
      job.h = h;
      if (h.type == kCmdWrite) job.payload = OwnPayload(h, payload, &job.pooled);
      Submit(std::move(job));
      return;
    }
    Chunk reply;
    if (Perform(h, payload, true, &reply)) {
      Queue(std::move(reply));
    } else if (h.type == kCmdRead && !crypto_failed_.load()) {
      // Not (all) in the page cache: a worker reads it, blocking; this thread goes on.
      Job job;
      job.h = h;
      Submit(std::move(job));
    } else if (!crypto_failed_.load()) {
      Forward(h, payload, false);
    }
  }

  // Hands a request to JS. Lane thread.
  void Forward(const Header& h, const uint8_t* payload, bool discarded) {
    size_t pooled;  // JS frees the buffer: not given back
    ForwardOwned(h, payload != nullptr && h.length > 0 ? OwnPayload(h, payload, &pooled) : nullptr, discarded);
  }

  // A buffer of its own holding the request's payload: the large-payload
  // buffer itself, handed over, or a copy of the bytes in the input buffer.
  // *pooled: see BufferPool::Take. Lane thread.
  std::unique_ptr<uint8_t[]> OwnPayload(const Header& h, const uint8_t* payload, size_t* pooled) {
    if (payload == payload_.get()) {
      *pooled = payload_pooled_;
      payload_cap_ = payload_pooled_ = 0;
      return std::move(payload_);
    }
    std::unique_ptr<uint8_t[]> copy = pool_.Take(h.length, pooled);
    memcpy(copy.get(), payload, h.length);
    return copy;
  }

  // Hands a request and its payload (WRITE) to JS. Any thread.
  void ForwardOwned(const Header& h, std::unique_ptr<uint8_t[]> payload, bool discarded) {
    Event ev;
    ev.kind = Event::kRequest;
    ev.h = h;
    ev.discarded = discarded;
    ev.payload = std::move(payload);
    {
      std::lock_guard<std::mutex> lock(mu_);
      forwarded_++;
    }
    Emit(std::move(ev));
  }

  // Does a fast-path READ or WRITE and builds its reply; false if JS must do
  // it (a page-cache miss when `nowait`, a short read, an I/O or crypto
  // error: JS retries and reports). Any thread.
  bool Perform(const Header& h, uint8_t* payload, bool nowait, Chunk* reply) {
    double t0 = MonotonicSeconds();
    bool done = h.type == kCmdRead ? ReadUnits(h, nowait, reply) : WriteUnits(h, payload, reply);
    if (done) stats_.Record(h.type == kCmdRead ? 0 : 1, h.length, MonotonicSeconds() - t0);
    return done;
  }

  bool ReadUnits(const Header& h, bool nowait, Chunk* reply) {
    size_t hdr = ReplyHeaderBytes(cfg_.structured, true);
    reply->data = pool_.Take(hdr + h.length, &reply->pooled);
    reply->len = hdr + h.length;
    uint8_t* data = reply->data.get() + hdr;
    size_t got = 0;
    while (got < h.length) {
      struct iovec iov = {data + got, h.length - got};
      bool try_nowait = nowait && nowait_.load(std::memory_order_relaxed);
      ssize_t r = preadv2(cfg_.file, &iov, 1, static_cast<off_t>(h.offset + got), try_nowait ? RWF_NOWAIT : 0);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && try_nowait && (errno == EOPNOTSUPP || errno == ENOSYS)) {
        nowait_.store(false, std::memory_order_relaxed);  // this file system cannot say: read and block, like nbdkit
        continue;
      }
      if (r <= 0) return false;  // a miss (EAGAIN), an error, or the end of the file
      got += static_cast<size_t>(r);
      if (got < h.length && try_nowait) return false;  // partly cached
    }
    if (cfg_.key) {
      std::string error;
      if (!DecryptNonZeroUnits(*cfg_.key, h.offset / cfg_.unit, data, h.length, &error)) {
        OpenSslErrors();
        return false;
      }
    }
    PutReplyHeader(reply->data.get(), h, cfg_.structured, true);
    return true;
  }

  // The payload is this lane's own buffer: it is encrypted in place (no
  // scratch copy: 1 MiB less to stream through the cache per MiB written) and
  // written in page-cache pieces. If a write fails, the plaintext is restored
  // so that JS can retry and report. False: JS must do it.
  bool WriteUnits(const Header& h, uint8_t* payload, Chunk* reply) {
    if (cfg_.key && !Transform(true, h, payload)) return false;
    WriteFailure f;
    if (!PwriteAll(cfg_.file, payload, h.length, h.offset, kPageCacheWrite, &f)) {
      if (cfg_.key) Transform(false, h, payload);
      return false;
    }
    reply->len = ReplyHeaderBytes(cfg_.structured, false);
    reply->data.reset(new uint8_t[reply->len]);
    PutReplyHeader(reply->data.get(), h, cfg_.structured, false);
    return true;
  }

  // XTS over a request's payload in place. An OpenSSL failure leaves it
  // undefined, so the connection ends (the request unanswered, nothing written).
  bool Transform(bool encrypt, const Header& h, uint8_t* payload) {
    std::string error;
    if (XtsTransform(*cfg_.key, encrypt, h.offset / cfg_.unit, payload, payload, h.length, &error)) return true;
    OpenSslErrors();
    crypto_failed_.store(true);
    std::lock_guard<std::mutex> lock(mu_);
    WakeLocked();
    return false;
  }

  // A READ or WRITE waiting for the volume's limiter.
  struct Throttled {
    Header h;
    double at = 0;            // when it may start
    uint64_t generation = 0;  // of the limits it was reserved under
    std::unique_ptr<uint8_t[]> payload;
    size_t pooled = 0;
  };

  // ---- RBD (librbd aio) ---------------------------------------------------

  struct RbdJob {
    Header h;
    double t0 = 0;
    Chunk reply;                          // READ: header + data, read into in place
    std::unique_ptr<uint8_t[]> payload;   // WRITE: ciphertext while in flight
    size_t pooled = 0;
  };

  // Starts a fast-path READ or WRITE on the image. Lane thread.
  void SubmitRbd(const Header& h, uint8_t* payload) {
    auto job = std::make_shared<RbdJob>();
    job->h = h;
    job->t0 = MonotonicSeconds();
    uint8_t* buf;
    if (h.type == kCmdRead) {
      size_t hdr = ReplyHeaderBytes(cfg_.structured, true);
      job->reply.data = pool_.Take(hdr + h.length, &job->reply.pooled);
      job->reply.len = hdr + h.length;
      buf = job->reply.data.get() + hdr;
    } else {
      job->payload = OwnPayload(h, payload, &job->pooled);
      buf = job->payload.get();
      if (cfg_.key && !Transform(true, h, buf)) return;
    }
    {
      std::lock_guard<std::mutex> lock(jobs_mu_);
      jobs_outstanding_++;
    }
    auto done = [this, job](ssize_t ret) { RbdComplete(job, ret); };
    int r = h.type == kCmdRead ? RbdAioRead(*cfg_.rbd, h.offset, h.length, buf, done)
                               : RbdAioWrite(*cfg_.rbd, h.offset, h.length, buf, done);
    if (r < 0) RbdComplete(job, r);
  }

  // A request finished (librbd thread, or the lane thread if it never started).
  void RbdComplete(const std::shared_ptr<RbdJob>& job, ssize_t ret) {
    const Header& h = job->h;
    bool read = h.type == kCmdRead;
    bool ok = read ? ret == static_cast<ssize_t>(h.length) : ret >= 0;
    size_t hdr = ReplyHeaderBytes(cfg_.structured, read);
    if (ok && read && cfg_.key) {
      std::string error;
      if (!DecryptNonZeroUnits(*cfg_.key, h.offset / cfg_.unit, job->reply.data.get() + hdr, h.length, &error)) {
        OpenSslErrors();
        ok = false;
      }
    }
    if (ok) {
      if (!read) {
        job->reply.data.reset(new uint8_t[hdr]);
        job->reply.len = hdr;
        job->reply.pooled = 0;
      }
      PutReplyHeader(job->reply.data.get(), h, cfg_.structured, read);
      stats_.Record(read ? 0 : 1, h.length, MonotonicSeconds() - job->t0);
    } else {
      // JS retries it through the backend and answers (EIO and the reason, if it fails again).
      if (!read && cfg_.key) Transform(false, h, job->payload.get());
      if (!crypto_failed_.load()) ForwardOwned(h, read ? nullptr : std::move(job->payload), false);
    }
    pool_.Give(std::move(job->payload), job->pooled);
    // try_lock: if the lane thread is sending, the reply queues behind what it sends.
    std::unique_lock<std::mutex> send(send_mu_, std::defer_lock);
    if (ok) send.try_lock();
    std::lock_guard<std::mutex> lock(mu_);
    bool sent = false;
    if (ok && !exited_) {
      sent = send.owns_lock() && SendNow(&job->reply);
      if (sent) pool_.Give(std::move(job->reply.data), job->reply.pooled);
      else js_out_.push_back(std::move(job->reply));
    }
    if (send.owns_lock()) send.unlock();
    size_t before;
    {
      std::lock_guard<std::mutex> jobs(jobs_mu_);
      before = jobs_outstanding_--;
    }
    jobs_cv_.notify_all();
    // A reply sent here leaves the lane thread nothing to do, unless it waits on the count
    // (reading paused at kMaxRbdInFlight, or close() waiting for the last job): it sleeps on
    // until the next request. Waking it anyway cost an eventfd write and a wake-up per I/O
    // on this thread and the lane's (at QD1, about a third of the daemon's CPU per request).
    // Still under mu_: the lane thread takes it before it ends (and frees this object).
    if (!sent || before >= kMaxRbdInFlight || close_requested_ || stop_reading_) WakeLocked();
  }

  // Under send_mu_ and mu_ (a librbd thread): writes a reply straight to the socket
  // when nothing is queued ahead of it, saving the hop through the lane thread
  // (an eventfd wake-up: tens of µs at QD1 on a loaded machine). Replies cannot
  // interleave: every send holds send_mu_, and the unsent rest of a partly sent
  // reply is queued before send_mu_ is let go. True if it all went; else
  // c->sent says how much did, and the caller queues it.
  bool SendNow(Chunk* c) {
    if (!out_.empty() || !js_out_.empty()) return false;
    ssize_t r;
    do r = send(cfg_.sock, c->data.get(), c->len, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (r < 0 && errno == EINTR);
    if (r <= 0) return false;  // full, or an error that the lane thread's own send meets and reports
    c->sent = static_cast<size_t>(r);
    return c->sent == c->len;
  }

  // ---- workers (large requests) ------------------------------------------

  struct Job {
    Header h;
    std::unique_ptr<uint8_t[]> payload;
    size_t pooled = 0;
  };

  void Submit(Job job) {
    {
      std::lock_guard<std::mutex> lock(jobs_mu_);
      if (workers_.empty()) {
        for (size_t i = 0; i < kWorkers; ++i) workers_.emplace_back([this] { Work(); });
      }
      jobs_.push_back(std::move(job));
      jobs_outstanding_++;
    }
    jobs_cv_.notify_one();
  }

  void Work() {
    pthread_setname_np(pthread_self(), "nitride-nbd-io");
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(jobs_mu_);
        jobs_cv_.wait(lock, [this] { return !jobs_.empty() || workers_stop_; });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      Chunk reply;
      bool done = Perform(job.h, job.payload.get(), false, &reply);
      if (!done && !crypto_failed_.load()) ForwardOwned(job.h, std::move(job.payload), false);
      pool_.Give(std::move(job.payload), job.pooled);  // (a forwarded one is JS's now: null here)
      {
        // The reply is queued before the job stops counting: the lane thread's
        // final flush waits for the count, then takes the queue.
        std::lock_guard<std::mutex> lock(mu_);
        if (done && !exited_) js_out_.push_back(std::move(reply));
      }
      {
        std::lock_guard<std::mutex> lock(jobs_mu_);
        jobs_outstanding_--;
      }
      jobs_cv_.notify_all();
      std::lock_guard<std::mutex> lock(mu_);
      WakeLocked();
    }
  }

  size_t JobsOutstanding() {
    std::lock_guard<std::mutex> lock(jobs_mu_);
    return jobs_outstanding_;
  }

  // Lets the queued jobs finish, then ends the workers.
  void StopWorkers() {
    std::vector<std::thread> workers;
    {
      std::unique_lock<std::mutex> lock(jobs_mu_);
      jobs_cv_.wait(lock, [this] { return jobs_outstanding_ == 0; });
      workers_stop_ = true;
      workers.swap(workers_);
    }
    jobs_cv_.notify_all();
    for (auto& t : workers) t.join();
  }

  void Queue(Chunk c) {
    out_bytes_ += c.len;
    out_.push_back(std::move(c));
  }

  // Writes queued replies until done or the socket is full.
  void Flush() {
    std::lock_guard<std::mutex> send(send_mu_);  // see SendNow
    while (!out_.empty() && !broken_) {
      struct iovec iov[kMaxIov];
      size_t n = 0;
      for (auto it = out_.begin(); it != out_.end() && n < kMaxIov; ++it, ++n) {
        iov[n].iov_base = it->data.get() + it->sent;
        iov[n].iov_len = it->len - it->sent;
      }
      struct msghdr msg;
      memset(&msg, 0, sizeof msg);
      msg.msg_iov = iov;
      msg.msg_iovlen = n;
      ssize_t r = sendmsg(cfg_.sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        broken_ = true;
        End("error", std::string("send: ") + strerror(errno));
        out_.clear();
        out_bytes_ = 0;
        return;
      }
      size_t left = static_cast<size_t>(r);
      total_sent_ += left;
      out_bytes_ -= left;
      while (left > 0) {
        Chunk& c = out_.front();
        size_t take = std::min(left, c.len - c.sent);
        c.sent += take;
        left -= take;
        if (c.sent == c.len) {
          pool_.Give(std::move(c.data), c.pooled);
          out_.pop_front();
        }
      }
    }
  }

  Config cfg_;
  LaneStats stats_;
  Napi::ThreadSafeFunction tsfn_;
  int wake_;  // eventfd; -1 once the thread has ended (mu_)

  // Held to write to the socket or to change out_ (lane thread, RBD completions:
  // SendNow); taken before mu_. The file path's Queue() runs on the lane
  // thread only and never alongside SendNow (no RBD there).
  std::mutex send_mu_;
  // Shared with the JS thread (mu_).
  std::mutex mu_;
  std::deque<Chunk> js_out_;
  std::deque<Event> events_;
  size_t forwarded_ = 0;
  bool stop_reading_ = false;
  bool close_requested_ = false;
  bool exited_ = false;

  // Lane thread only.
  enum State { kHeader, kPayload, kDiscard } state_ = kHeader;
  std::unique_ptr<uint8_t[]> in_;
  size_t in_cap_ = 0, in_start_ = 0, in_end_ = 0;
  Header pending_;
  std::unique_ptr<uint8_t[]> payload_;
  size_t payload_cap_ = 0, payload_have_ = 0;
  size_t payload_pooled_ = 0;  // payload_'s pool capacity (0: not pooled)
  bool large_write_next_ = false;  // the last request parsed was a large WRITE (ReadSocket)
  BufferPool pool_;
  uint64_t discard_left_ = 0;
  std::atomic<bool> crypto_failed_{false};  // see Transform
  std::atomic<bool> nowait_{true};
  // Workers (jobs_mu_).
  std::mutex jobs_mu_;
  std::condition_variable jobs_cv_;
  std::deque<Job> jobs_;
  std::vector<std::thread> workers_;
  size_t jobs_outstanding_ = 0;
  bool workers_stop_ = false;
  std::deque<Chunk> out_;
  size_t out_bytes_ = 0;
  size_t total_sent_ = 0;
  bool reading_done_ = false;
  bool ended_ = false;
  bool graceful_ = false;
  bool broken_ = false;
  bool hup_ = false;
  double spin_gap_ = 0;   // recent gap between going idle and the next request (SpinForInput)
  double last_idle_ = 0;  // when the thread last went to sleep in poll, 0 if not measuring
  bool input_pending_ = false;  // the last read filled its target: read again before deferring input
  std::deque<Throttled> throttled_;  // in arrival order (their start times too)
  bool client_gone_ = false;          // ended other than by DISC: waiting requests are dropped
};

class NbdLaneWrap : public Napi::ObjectWrap<NbdLaneWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NbdLane",
                       {
                           InstanceMethod<&NbdLaneWrap::Send>("send"),
                           InstanceMethod<&NbdLaneWrap::StopReading>("stopReading"),
                           InstanceMethod<&NbdLaneWrap::Close>("close"),
                           InstanceMethod<&NbdLaneWrap::TakeStats>("takeStats"),
                       });
  }

  // new NbdLane({socketFd, fileFd | rbdImage, cipher|null, unit, size, maxPayload, maxDiscard,
  //              structured, readOnly, latencyBuckets, initialInput?}, onEvent)
  explicit NbdLaneWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NbdLaneWrap>(info) {
    Napi::Env env = info.Env();
    const char* fn = "NbdLane";
    if (!info[0].IsObject()) ThrowTypeError(env, "NbdLane: options must be an object");
    if (!info[1].IsFunction()) ThrowTypeError(env, "NbdLane: onEvent must be a function");
    Napi::Object o = info[0].As<Napi::Object>();
    Config cfg;
    uint64_t v;
    if (!OptionalUint(o, "socketFd", INT32_MAX, fn, &v)) ThrowTypeError(env, "NbdLane: socketFd is required");
    int sock_fd = static_cast<int>(v);
    int file_fd = -1;
    Napi::Value rbd = o.Get("rbdImage");
    if (!rbd.IsUndefined() && !rbd.IsNull()) cfg.rbd = RbdImageArg(env, rbd, fn);
    else if (OptionalUint(o, "fileFd", INT32_MAX, fn, &v)) file_fd = static_cast<int>(v);
    else ThrowTypeError(env, "NbdLane: fileFd or rbdImage is required");
    if (!OptionalUint(o, "size", (1ull << 53) - 1, fn, &cfg.size)) ThrowTypeError(env, "NbdLane: size is required");
    OptionalUint(o, "maxPayload", 1ull << 31, fn, &cfg.max_payload);
    OptionalUint(o, "maxDiscard", 1ull << 32, fn, &cfg.max_discard);
    OptionalBool(o, "structured", fn, &cfg.structured);
    OptionalBool(o, "readOnly", fn, &cfg.read_only);
    Napi::Value cipher = o.Get("cipher");
    if (!cipher.IsNull() && !cipher.IsUndefined()) {
      cfg.key = XtsKeyArg(env, cipher, fn);
      cfg.unit = XtsUnitSize(*cfg.key);
    } else if (OptionalUint(o, "unit", 1u << 20, fn, &v)) {
      cfg.unit = v;
    }
    if (cfg.unit == 0 || cfg.unit % 512 != 0) ThrowRangeError(env, "NbdLane: unit must be a multiple of 512");
    Napi::Value buckets = o.Get("latencyBuckets");
    if (buckets.IsArray()) {
      Napi::Array a = buckets.As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); ++i) cfg.buckets.push_back(a.Get(i).As<Napi::Number>().DoubleValue());
    }
    Napi::Value limiter = o.Get("limiter");
    if (!limiter.IsUndefined() && !limiter.IsNull()) cfg.limiter = IoLimiterArg(env, limiter, fn);
    Napi::Value initial = o.Get("initialInput");
    if (!initial.IsUndefined() && !initial.IsNull()) {
      uint8_t* data;
      size_t len;
      BytesArg(env, initial, fn, "initialInput", &data, &len);
      cfg.initial.assign(data, data + len);
    }

    FdGuard sock(fcntl(sock_fd, F_DUPFD_CLOEXEC, 3));
    if (sock.get() < 0) ThrowErrno(env, "NbdLane: dup socket", errno, "fcntl");
    FdGuard file(cfg.rbd ? -1 : fcntl(file_fd, F_DUPFD_CLOEXEC, 3));
    if (!cfg.rbd && file.get() < 0) ThrowErrno(env, "NbdLane: dup file", errno, "fcntl");
    FdGuard wake(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (wake.get() < 0) ThrowErrno(env, "NbdLane: eventfd", errno, "eventfd");
    cfg.sock = sock.get();
    cfg.file = file.get();

    // Events are drained by one call per batch; the lane is found through a
    // shared_ptr held by the function's context.
    auto holder = new std::shared_ptr<Lane>();
    Napi::ThreadSafeFunction tsfn = Napi::ThreadSafeFunction::New(
        env, info[1].As<Napi::Function>(), "nitride-nbd-lane", 0, 1, holder,
        [](Napi::Env, void*, std::shared_ptr<Lane>* h) { delete h; }, holder);
    lane_ = std::make_shared<Lane>(std::move(cfg), tsfn, wake.get());
    *holder = lane_;
    sock.release();
    file.release();
    wake.release();
    Lane::Start(lane_);
  }

  ~NbdLaneWrap() override = default;

 private:
  // send(buffers: Uint8Array[]): one forwarded request's reply.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsArray()) ThrowTypeError(env, "NbdLane.send: buffers must be an array");
    Napi::Array a = info[0].As<Napi::Array>();
    std::vector<std::pair<const uint8_t*, size_t>> parts;
    for (uint32_t i = 0; i < a.Length(); ++i) {
      uint8_t* data;
      size_t len;
      BytesArg(env, a.Get(i), "NbdLane.send", "buffer", &data, &len);
      parts.emplace_back(data, len);
    }
    lane_->Send(std::move(parts));
    return env.Undefined();
  }

  Napi::Value StopReading(const Napi::CallbackInfo& info) {
    lane_->StopReading();
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    lane_->Close();
    return info.Env().Undefined();
  }

  // takeStats(): Float64Array, see LaneStats (the counters restart from zero).
  Napi::Value TakeStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<double> v = lane_->TakeStats();
    Napi::Float64Array out = Napi::Float64Array::New(env, v.size());
    std::copy(v.begin(), v.end(), out.Data());
    return out;
  }

  std::shared_ptr<Lane> lane_;
};

}  // namespace

void InitNbdLane(Napi::Env env, Napi::Object exports) {
  exports.Set("NbdLane", NbdLaneWrap::Define(env));
}

}  // namespace nitride
