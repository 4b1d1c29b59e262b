// Block-volume I/O for nitride's storage layers (src/volume/): the file
// system calls node does not expose (fallocate, lseek SEEK_DATA/SEEK_HOLE,
// preadv2 RWF_NOWAIT) and the encrypted volume's hot path, where one libuv
// threadpool job does both the system call and the AES-256-XTS work of a
// request (or, for reads the page cache can serve, one synchronous call).
//
// Exports (see src/native/addon.ts for the typed JS side):
//   punchHole(fd, offset, length): Promise<void>
//       fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)
//   zeroRange(fd, offset, length): Promise<void>
//       fallocate(FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE)
//   adviseWillNeed(fd, offset, length): Promise<void>
//       posix_fadvise(POSIX_FADV_WILLNEED): start reading the range into the
//       page cache (NBD_CMD_CACHE)
//   seekData(fd, offset): number   lseek(SEEK_DATA), -1 at ENXIO
//   seekHole(fd, offset): number   lseek(SEEK_HOLE), -1 at ENXIO
//   tryPreadDecrypt(fd, cipher, offset, buf): 1 | 0 | -1
//   tryPread(fd, offset, buf): 1 | 0 | -1
//       preadDecrypt / a plain pread, done synchronously only if the page
//       cache can serve them without blocking (preadv2 RWF_NOWAIT); see below.
//   preadDecrypt(fd, cipher, offset, buf): Promise<void>
//       pread buf.length bytes at offset, then decrypt in place, data unit by
//       data unit (tweak = offset / unit + i); a unit whose ciphertext is all
//       zero bytes (a hole, a punched or zero-ranged range, or bytes past the
//       end of the file) is left as plaintext zeroes without decrypting.
//   encryptPwrite(fd, cipher, offset, data, {sync}): Promise<void>
//       encrypt data into a scratch buffer owned by the worker thread (the
//       caller's plaintext is never modified; 1 MiB steps), pwrite it at
//       offset, then fdatasync(fd) when sync is true.
// For the cipher functions, offset and the length must be multiples of the
// cipher's data unit. The caller's Buffer is referenced until the promise settles; it
// must not be detached (transferred) meanwhile, and, like with fs.read, its
// contents are undefined while a read into it is in flight. The fd must stay
// open until the promise settles (the volume layer counts in-flight
// operations before closing).
//
// Errors: system-call failures reject with node-style errors (code = errno
// name, errno, syscall); bad arguments throw synchronously (TypeError /
// RangeError, see errors.cc); OpenSSL failures reject with code ERR_OPENSSL.
//
// Napi::AsyncWorker runs Execute() on a libuv threadpool thread; it must not
// touch JS there. The XtsKey it uses is thread-safe (xts.cc leases a context
// per transform) and shared: XtsCipher.destroy() during an operation leaves
// the key state alive until the operation finishes.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>

#include "nitride.h"

namespace nitride {

namespace {

constexpr double kMaxSafeInteger = 9007199254740991.0;
// encryptPwrite encrypts and writes in steps of this size (a multiple of every
// data unit size) through a scratch buffer of this size kept per threadpool
// thread, so a 32 MiB write needs no 32 MiB allocation. Measured: steps of
// 64 KiB to 1 MiB cost the same per byte (the AES work dominates); 1 MiB keeps
// requests up to 1 MiB a single pwrite (one range sync on an O_DSYNC fd).
// preadDecrypt reads the whole request with one pread (chunking it bought
// nothing either).
constexpr size_t kWriteStep = kEncryptWriteStep;

uint64_t OffsetArg(Napi::Env env, Napi::Value v, const char* fn,
                   const char* what) {
  if (!v.IsNumber()) {
    ThrowTypeError(env, std::string(fn) + ": " + what + " must be a number");
  }
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > kMaxSafeInteger || std::floor(d) != d) {
    ThrowRangeError(env, std::string(fn) + ": " + what +
                             " must be a non-negative safe integer, got " +
                             v.ToString().Utf8Value());
  }
  return static_cast<uint64_t>(d);
}


// Base of the threadpool jobs: a promise, an errno failure (err_, syscall_,
// step_) or an OpenSSL failure (crypto_error_), and references that keep the
// JS buffer alive until completion.
class IoJob : public Napi::AsyncWorker {
 public:
  IoJob(Napi::Env env, const char* name)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Fail(int err, const char* syscall, std::string step) {
    err_ = err;
    syscall_ = syscall;
    step_ = std::move(step);
  }

  void Keep(Napi::Value v) { keep_ = Napi::Persistent(v.As<Napi::Object>()); }

  void OnOK() override {
    Napi::Env env = Env();
    if (err_ != 0) {
      try {
        ThrowErrno(env, step_, err_, syscall_);
      } catch (const Napi::Error& e) {
        deferred_.Reject(e.Value());
      }
    } else if (!crypto_error_.empty()) {
      try {
        ThrowWithCode(env, crypto_error_, "ERR_OPENSSL");
      } catch (const Napi::Error& e) {
        deferred_.Reject(e.Value());
      }
    } else {
      deferred_.Resolve(env.Undefined());
    }
  }

  // Not reached (we never SetError), but settle the promise regardless.
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

  std::string crypto_error_;

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference keep_;
  int err_ = 0;
  const char* syscall_ = "";
  std::string step_;
};

// ---------------------------------------------------------------------------
// fallocate

class FallocateJob : public IoJob {
 public:
  FallocateJob(Napi::Env env, const char* name, int fd, int mode, uint64_t off,
               uint64_t len)
      : IoJob(env, name), name_(name), fd_(fd), mode_(mode), off_(off), len_(len) {}

  void Execute() override {
    if (len_ == 0) return;
    int rc;
    do {
      rc = fallocate(fd_, mode_, static_cast<off_t>(off_),
                     static_cast<off_t>(len_));
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
      Fail(errno, "fallocate",
           std::string(name_) + " fd " + std::to_string(fd_) + " [" +
               std::to_string(off_) + ", +" + std::to_string(len_) + ")");
    }
  }

 private:
  const char* name_;
  int fd_;
  int mode_;
  uint64_t off_;
  uint64_t len_;
};

template <int kMode>
Napi::Value Fallocate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = kMode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)
                       ? "punchHole"
                       : "zeroRange";
  int fd = FdArg(info, 0, fn);
  uint64_t off = OffsetArg(env, info[1], fn, "offset");
  uint64_t len = OffsetArg(env, info[2], fn, "length");
  if (off + len > static_cast<uint64_t>(kMaxSafeInteger)) {
    ThrowRangeError(env, std::string(fn) + ": offset + length exceeds 2^53-1");
  }
  auto* job = new FallocateJob(env, fn, fd, kMode, off, len);
  Napi::Promise p = job->Promise();
  job->Queue();
  return p;
}

// ---------------------------------------------------------------------------
// posix_fadvise(POSIX_FADV_WILLNEED): start readahead of a range (NBD_CMD_CACHE)

class WillNeedJob : public IoJob {
 public:
  WillNeedJob(Napi::Env env, int fd, uint64_t off, uint64_t len)
      : IoJob(env, "nitride:adviseWillNeed"), fd_(fd), off_(off), len_(len) {}

  void Execute() override {
    if (len_ == 0) return;
    // posix_fadvise returns the error number instead of setting errno.
    int rc = posix_fadvise(fd_, static_cast<off_t>(off_),
                           static_cast<off_t>(len_), POSIX_FADV_WILLNEED);
    if (rc != 0) {
      Fail(rc, "posix_fadvise",
           "adviseWillNeed fd " + std::to_string(fd_) + " [" +
               std::to_string(off_) + ", +" + std::to_string(len_) + ")");
    }
  }

 private:
  int fd_;
  uint64_t off_;
  uint64_t len_;
};

Napi::Value AdviseWillNeed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "adviseWillNeed";
  int fd = FdArg(info, 0, fn);
  uint64_t off = OffsetArg(env, info[1], fn, "offset");
  uint64_t len = OffsetArg(env, info[2], fn, "length");
  if (off + len > static_cast<uint64_t>(kMaxSafeInteger)) {
    ThrowRangeError(env, std::string(fn) + ": offset + length exceeds 2^53-1");
  }
  auto* job = new WillNeedJob(env, fd, off, len);
  Napi::Promise p = job->Promise();
  job->Queue();
  return p;
}

// ---------------------------------------------------------------------------
// lseek SEEK_DATA / SEEK_HOLE (synchronous: an in-memory extent lookup)

template <int kWhence>
Napi::Value Seek(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = kWhence == SEEK_DATA ? "seekData" : "seekHole";
  int fd = FdArg(info, 0, fn);
  uint64_t off = OffsetArg(env, info[1], fn, "offset");
  off_t r = lseek(fd, static_cast<off_t>(off), kWhence);
  if (r < 0) {
    if (errno == ENXIO) return Napi::Number::New(env, -1);
    ThrowErrno(env, std::string(fn) + " fd " + std::to_string(fd) + " at " +
                        std::to_string(off),
               errno, "lseek");
  }
  return Napi::Number::New(env, static_cast<double>(r));
}

// ---------------------------------------------------------------------------
// preadDecrypt / encryptPwrite

class PreadDecryptJob : public IoJob {
 public:
  PreadDecryptJob(Napi::Env env, int fd, std::shared_ptr<XtsKey> key,
                  uint64_t off, Napi::Value buf, uint8_t* data, size_t len)
      : IoJob(env, "nitride:preadDecrypt"),
        fd_(fd), key_(std::move(key)), off_(off), data_(data), len_(len) {
    Keep(buf);
  }

  void Execute() override {
    size_t done = 0;
    while (done < len_) {
      ssize_t r = pread(fd_, data_ + done, len_ - done,
                        static_cast<off_t>(off_ + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        Fail(errno, "pread",
             "preadDecrypt fd " + std::to_string(fd_) + " at " +
                 std::to_string(off_ + done));
        return;
      }
      if (r == 0) {  // past the end of the file: reads as a hole
        memset(data_ + done, 0, len_ - done);
        break;
      }
      done += static_cast<size_t>(r);
    }
    if (!DecryptNonZeroUnits(*key_, off_ / XtsUnitSize(*key_), data_, len_,
                             &crypto_error_)) {
      crypto_error_ = "preadDecrypt: " + crypto_error_;
    }
  }

 private:
  int fd_;
  std::shared_ptr<XtsKey> key_;
  uint64_t off_;
  uint8_t* data_;
  size_t len_;
};

class EncryptPwriteJob : public IoJob {
 public:
  EncryptPwriteJob(Napi::Env env, int fd, std::shared_ptr<XtsKey> key,
                   uint64_t off, Napi::Value buf, const uint8_t* data,
                   size_t len, bool sync)
      : IoJob(env, "nitride:encryptPwrite"),
        fd_(fd), key_(std::move(key)), off_(off), data_(data), len_(len),
        sync_(sync) {
    Keep(buf);
  }

  void Execute() override {
    // Per-thread scratch for the ciphertext (not secret, so not cleansed).
    thread_local std::unique_ptr<uint8_t[]> scratch;
    if (!scratch) scratch.reset(new uint8_t[kWriteStep]);
    WriteFailure f;
    if (!EncryptAndWrite(fd_, *key_, off_, data_, len_, scratch.get(), &f)) {
      if (f.err == 0) {
        crypto_error_ = "encryptPwrite: " + f.crypto_error;
      } else {
        Fail(f.err, "pwrite", "encryptPwrite fd " + std::to_string(fd_) + " at " + std::to_string(f.at) + f.detail);
      }
      return;
    }
    if (sync_ && fdatasync(fd_) != 0) {
      Fail(errno, "fdatasync", "encryptPwrite fd " + std::to_string(fd_));
    }
  }


 private:
  int fd_;
  std::shared_ptr<XtsKey> key_;
  uint64_t off_;
  const uint8_t* data_;
  size_t len_;
  bool sync_;
};

// Checks a cipher I/O request: offset and length whole data units.
void CheckUnitAligned(Napi::Env env, const XtsKey& key, uint64_t off,
                      size_t len, const char* fn) {
  const size_t unit = XtsUnitSize(key);
  if (off % unit != 0 || len % unit != 0) {
    ThrowRangeError(env, std::string(fn) + ": offset " + std::to_string(off) +
                             " and length " + std::to_string(len) +
                             " must be multiples of the data unit size " +
                             std::to_string(unit));
  }
  if (off + len > static_cast<uint64_t>(kMaxSafeInteger)) {
    ThrowRangeError(env, std::string(fn) + ": offset + length exceeds 2^53-1");
  }
}

// The (fd, cipher, offset, buffer) arguments shared by the XTS I/O calls, checked:
// the buffer must cover whole data units at a unit-aligned offset.
struct UnitIo {
  int fd;
  std::shared_ptr<XtsKey> key;
  uint64_t off;
  uint8_t* data;
  size_t len;
};

static UnitIo UnitIoArgs(const Napi::CallbackInfo& info, const char* fn, const char* buf_name) {
  Napi::Env env = info.Env();
  UnitIo io;
  io.fd = FdArg(info, 0, fn);
  io.key = XtsKeyArg(env, info[1], fn);
  io.off = OffsetArg(env, info[2], fn, "offset");
  BytesArg(env, info[3], fn, buf_name, &io.data, &io.len);
  CheckUnitAligned(env, *io.key, io.off, io.len, fn);
  return io;
}

Napi::Value PreadDecrypt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "preadDecrypt";
  auto [fd, key, off, data, len] = UnitIoArgs(info, fn, "buf");
  auto* job = new PreadDecryptJob(env, fd, std::move(key), off, info[3], data, len);
  Napi::Promise p = job->Promise();
  job->Queue();
  return p;
}

Napi::Value EncryptPwrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "encryptPwrite";
  auto [fd, key, off, data, len] = UnitIoArgs(info, fn, "data");
  bool sync = false;
  if (info.Length() > 4 && !info[4].IsUndefined()) {
    if (!info[4].IsObject()) {
      ThrowTypeError(env, std::string(fn) + ": options must be an object");
    }
    OptionalBool(info[4].As<Napi::Object>(), "sync", fn, &sync);
  }
  auto* job =
      new EncryptPwriteJob(env, fd, std::move(key), off, info[3], data, len, sync);
  Napi::Promise p = job->Promise();
  job->Queue();
  return p;
}

// encryptPwriteSync: the same encrypt + pwrite on the calling (main) thread,
// for small non-FUA writes. A buffered 4 KiB pwrite lands in the page cache
// in a few microseconds, while a threadpool round trip (queue, wake a worker,
// complete back on the loop) costs ~20 CPU-us on these 2-core hosts; FUA and
// large writes stay on the threadpool, where blocking belongs.
Napi::Value EncryptPwriteSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "encryptPwriteSync";
  auto [fd, key, off, data, len] = UnitIoArgs(info, fn, "data");
  if (len > kWriteStep) ThrowRangeError(env, std::string(fn) + ": at most " + std::to_string(kWriteStep) + " bytes");
  thread_local std::unique_ptr<uint8_t[]> scratch;
  if (!scratch) scratch.reset(new uint8_t[kWriteStep]);
  WriteFailure f;
  if (!EncryptAndWrite(fd, *key, off, data, len, scratch.get(), &f)) {
    if (f.err == 0) ThrowWithCode(env, std::string(fn) + ": " + f.crypto_error, "ERR_OPENSSL");
    ThrowErrno(env, std::string(fn) + " pwrite fd " + std::to_string(fd) + " at " + std::to_string(f.at) + f.detail, f.err, "pwrite");
  }
  return env.Undefined();
}

// ---------------------------------------------------------------------------
// tryPreadDecrypt / tryPread: the same reads, synchronously on the calling
// (main) thread, but only when the kernel can serve them from the page cache
// without blocking: preadv2(RWF_NOWAIT). This skips the threadpool round trip
// (measured: a 4 KiB cached read + decrypt costs ~3.5 CPU-us inline against
// ~20 through the threadpool). Results:
//    1  done (buf filled; decrypted for tryPreadDecrypt);
//    0  not entirely in the page cache (EAGAIN or a short read, also at the
//       end of the file): use the threadpool job; buf contents undefined;
//   -1  the file system does not support RWF_NOWAIT reads (EOPNOTSUPP, e.g.
//       tmpfs): use the threadpool job, and stop trying on this file.
// Other errors throw (node-style errno error).

constexpr int kNowaitDone = 1;
constexpr int kNowaitMiss = 0;
constexpr int kNowaitUnsupported = -1;

int ReadNowait(Napi::Env env, const char* fn, int fd, uint8_t* data,
               size_t len, uint64_t off) {
  if (len == 0) return kNowaitDone;
  struct iovec iov = {data, len};
  ssize_t r;
  do {
    r = preadv2(fd, &iov, 1, static_cast<off_t>(off), RWF_NOWAIT);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EAGAIN) return kNowaitMiss;
    if (errno == EOPNOTSUPP || errno == ENOSYS) return kNowaitUnsupported;
    ThrowErrno(env,
               std::string(fn) + " fd " + std::to_string(fd) + " at " +
                   std::to_string(off),
               errno, "preadv2");
  }
  return static_cast<size_t>(r) == len ? kNowaitDone : kNowaitMiss;
}

// tryPreadDecrypt(fd, cipher, offset, buf): same arguments and zero-unit rule
// as preadDecrypt.
Napi::Value TryPreadDecrypt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "tryPreadDecrypt";
  auto [fd, key, off, data, len] = UnitIoArgs(info, fn, "buf");
  int rc = ReadNowait(env, fn, fd, data, len, off);
  if (rc == kNowaitDone) {
    std::string error;
    if (!DecryptNonZeroUnits(*key, off / XtsUnitSize(*key), data, len, &error)) {
      ThrowWithCode(env, std::string(fn) + ": " + error, "ERR_OPENSSL");
    }
  }
  return Napi::Number::New(env, rc);
}

// tryPread(fd, offset, buf): a plain read.
Napi::Value TryPread(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "tryPread";
  int fd = FdArg(info, 0, fn);
  uint64_t off = OffsetArg(env, info[1], fn, "offset");
  uint8_t* data;
  size_t len;
  BytesArg(env, info[2], fn, "buf", &data, &len);
  if (off + len > static_cast<uint64_t>(kMaxSafeInteger)) {
    ThrowRangeError(env, std::string(fn) + ": offset + length exceeds 2^53-1");
  }
  return Napi::Number::New(env, ReadNowait(env, fn, fd, data, len, off));
}

}  // namespace

// Shared with nbd_lane.cc (declared in nitride.h).

// True if the n bytes at p (n >= 16) are all zero. Real ciphertext fails the
// first 16-byte test with probability 1 - 2^-128.
bool AllZero(const uint8_t* p, size_t n) {
  uint64_t a, b;
  memcpy(&a, p, 8);
  memcpy(&b, p + 8, 8);
  if ((a | b) != 0) return false;
  return memcmp(p, p + 16, n - 16) == 0;
}

// Decrypts `len` bytes at `data` in place, the first data unit numbered
// `first_unit`, leaving all-zero units as zeroes; one transform per run of
// non-zero units. Any thread.
bool DecryptNonZeroUnits(XtsKey& key, uint64_t first_unit, uint8_t* data,
                         size_t len, std::string* error) {
  const size_t unit = XtsUnitSize(key);
  const size_t units = len / unit;
  size_t run = 0;  // first unit of the current run of non-zero units
  for (size_t i = 0; i <= units; ++i) {
    if (i < units && !AllZero(data + i * unit, unit)) continue;
    if (i > run) {
      uint8_t* p = data + run * unit;
      if (!XtsTransform(key, false, first_unit + run, p, p, (i - run) * unit,
                        error)) {
        return false;
      }
    }
    run = i + 1;
  }
  return true;
}

// cachestat(2), Linux 6.5 (the same number on every architecture); the C
// library here has no wrapper.
#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif
struct CachestatRange {
  uint64_t off, len;
};
struct Cachestat {
  uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

// True if every page of [off, off + len) is in the page cache. False if not,
// or if the kernel cannot say (then never asked again).
bool RangeCached(int fd, uint64_t off, size_t len) {
  static std::atomic<bool> unsupported{false};
  static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  if (len == 0 || unsupported.load(std::memory_order_relaxed)) return false;
  CachestatRange range = {off, len};
  Cachestat cs;
  if (syscall(__NR_cachestat, fd, &range, &cs, 0) != 0) {
    if (errno == ENOSYS || errno == EPERM) unsupported.store(true, std::memory_order_relaxed);
    return false;
  }
  return cs.nr_cache >= (off + len - 1) / page - off / page + 1;
}

bool PwriteAll(int fd, const uint8_t* data, size_t len, uint64_t off, size_t piece, WriteFailure* f) {
  // Pieces exist to keep new folios small (kPageCacheWrite). A write over
  // pages already cached reuses their folios whatever its size, so such a
  // range goes in one call: a 1 MiB overwrite is 15 system calls fewer
  // (~40 us of CPU on this VM) for one cachestat (~3 us).
  if (len > piece && RangeCached(fd, off, len)) piece = len;
  for (size_t done = 0; done < len;) {
    ssize_t r = pwrite(fd, data + done, std::min(piece, len - done), static_cast<off_t>(off + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      f->err = r < 0 ? errno : EIO;
      f->at = off + done;
      if (r == 0) f->detail = " wrote nothing";
      return false;
    }
    done += static_cast<size_t>(r);
  }
  return true;
}

// Encrypts `len` bytes of plaintext at volume offset `off` into `out` (kWriteStep
// bytes of scratch), a step at a time, and pwrites each step in pieces of at
// most kPageCacheWrite bytes (see there). Never modifies `data`.
bool EncryptAndWrite(int fd, XtsKey& key, uint64_t off, const uint8_t* data, size_t len, uint8_t* out,
                     WriteFailure* f) {
  const size_t unit = XtsUnitSize(key);
  // An O_DSYNC descriptor syncs each pwrite: one per step, not one per piece.
  size_t piece = kPageCacheWrite;
  if (len > kPageCacheWrite) {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_DSYNC) != 0) piece = kWriteStep;
  }
  for (size_t pos = 0; pos < len;) {
    size_t n = std::min(kWriteStep, len - pos);
    if (!XtsTransform(key, true, (off + pos) / unit, data + pos, out, n, &f->crypto_error)) return false;
    if (!PwriteAll(fd, out, n, off + pos, piece, f)) return false;
    pos += n;
  }
  return true;
}


void InitBlockIo(Napi::Env env, Napi::Object exports) {
  exports.Set("punchHole",
              Napi::Function::New(
                  env, Fallocate<FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE>,
                  "punchHole"));
  exports.Set("zeroRange",
              Napi::Function::New(
                  env, Fallocate<FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE>,
                  "zeroRange"));
  exports.Set("adviseWillNeed",
              Napi::Function::New(env, AdviseWillNeed, "adviseWillNeed"));
  exports.Set("seekData", Napi::Function::New(env, Seek<SEEK_DATA>, "seekData"));
  exports.Set("seekHole", Napi::Function::New(env, Seek<SEEK_HOLE>, "seekHole"));
  exports.Set("preadDecrypt", Napi::Function::New(env, PreadDecrypt, "preadDecrypt"));
  exports.Set("tryPreadDecrypt", Napi::Function::New(env, TryPreadDecrypt, "tryPreadDecrypt"));
  exports.Set("tryPread", Napi::Function::New(env, TryPread, "tryPread"));
  exports.Set("encryptPwrite",
              Napi::Function::New(env, EncryptPwrite, "encryptPwrite"));
  exports.Set("encryptPwriteSync",
              Napi::Function::New(env, EncryptPwriteSync, "encryptPwriteSync"));
}

}  // namespace nitride
