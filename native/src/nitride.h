// Shared declarations for the nitride_native addon.
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>
#include <string>

#include <unistd.h>

namespace nitride {

// Module parts: each registers its exports on `exports`.
void InitTap(Napi::Env env, Napi::Object exports);
void InitPeerCred(Napi::Env env, Napi::Object exports);
void InitSdNotify(Napi::Env env, Napi::Object exports);
void InitMemfd(Napi::Env env, Napi::Object exports);  // memfd.cc
void InitProcess(Napi::Env env, Napi::Object exports);  // process.cc
void InitListen(Napi::Env env, Napi::Object exports);   // listen.cc
void InitXts(Napi::Env env, Napi::Object exports);
void InitGcm(Napi::Env env, Napi::Object exports);  // gcm_napi.cc
void InitBlockIo(Napi::Env env, Napi::Object exports);
void InitVpc(Napi::Env env, Napi::Object exports);  // vpc_napi.cc
void InitNbdLane(Napi::Env env, Napi::Object exports);  // nbd_lane.cc
void InitRbd(Napi::Env env, Napi::Object exports);  // rbd.cc
void InitIoLimiter(Napi::Env env, Napi::Object exports);  // io_limiter.cc

// A volume's IOPS/throughput limiter (io_limiter.h), shared by its lanes.
class IoLimiter;
// Reads argument `v` as an IoLimiter and returns its shared state (TypeError otherwise).
std::shared_ptr<IoLimiter> IoLimiterArg(Napi::Env env, Napi::Value v, const char* fn);

// The key state of an XtsCipher (defined in xts.cc), shared by the JS object
// and the threadpool operations using it; freed with its key schedules when
// the last owner lets go (XtsCipher.destroy() drops the JS object's share).
struct XtsKey;

// Reads argument `v` as a live XtsCipher and returns its key state. Throws a
// TypeError (ERR_INVALID_ARG_TYPE) if it is not an XtsCipher, an Error with
// code ERR_NITRIDE_XTS_DESTROYED if it has been destroyed. Main thread only.
std::shared_ptr<XtsKey> XtsKeyArg(Napi::Env env, Napi::Value v, const char* fn);

// The cipher's data unit size in bytes.
size_t XtsUnitSize(const XtsKey& key);

// AES-256-XTS of `len` bytes (a multiple of the data unit; the caller checks)
// from `in` to `out` (may be the same memory), the first data unit numbered
// `first_unit`. Touches no JS and is safe on any thread, concurrently with
// other transforms of the same key. On OpenSSL failure returns false with a
// message in *error (the output is then undefined).
bool XtsTransform(XtsKey& key, bool encrypt, uint64_t first_unit,
                  const uint8_t* in, uint8_t* out, size_t len,
                  std::string* error);

// Block I/O helpers (blockio.cc), any thread.
// Scratch size EncryptAndWrite needs: it encrypts and writes in steps of this many bytes.
constexpr size_t kEncryptWriteStep = 1u << 20;

// Largest single pwrite into the page cache. Since Linux 6.16 ext4 caches
// files in large folios sized by the write that creates them, and a later
// sub-folio write walks every block of its folio: after 1 MiB sequential
// writes, 4 KiB random writes ran at 39k IOPS against 96k after 64 KiB ones
// (ext4_block_write_begin was 73% of the daemon's CPU). Volumes see exactly
// that mix (an image copied in, then a guest's random writes), so writes over
// pages not cached yet are split into pieces of this size (PwriteAll).
// Pieces cost system calls: a 1 MiB write in 16 pieces took ~40 us more CPU
// than one pwrite on this VM, so a range already cached goes in one call.
constexpr size_t kPageCacheWrite = 64 * 1024;

// True if the n bytes at p (n >= 16) are all zero.
bool AllZero(const uint8_t* p, size_t n);

// Decrypts `len` bytes at `data` in place, the first data unit numbered
// `first_unit`, leaving all-zero units (holes: never written or discarded) as
// zeroes. False with a message in *error on OpenSSL failure.
bool DecryptNonZeroUnits(XtsKey& key, uint64_t first_unit, uint8_t* data,
                         size_t len, std::string* error);

// Why EncryptAndWrite failed: err = errno of pwrite at byte `at`, or 0 with crypto_error set.
struct WriteFailure {
  int err = 0;
  uint64_t at = 0;
  std::string detail;
  std::string crypto_error;
};

// pwrites `len` bytes at `off` in pieces of at most `piece` bytes, or in one
// call if the whole range is in the page cache (EINTR retried); false with
// the failing errno and offset in *f.
bool PwriteAll(int fd, const uint8_t* data, size_t len, uint64_t off, size_t piece, WriteFailure* f);

// Encrypts `len` bytes of plaintext for volume offset `off` (unit-aligned)
// into `out` (kEncryptWriteStep bytes of scratch) a step at a time and pwrites
// each step to `fd`. Never modifies `data`.
bool EncryptAndWrite(int fd, XtsKey& key, uint64_t off, const uint8_t* data,
                     size_t len, uint8_t* out, WriteFailure* f);

// Throws a JS Error "<step>: <strerror(err)>" carrying Node-style system-error
// properties: code = errno name ("EBUSY"), errno = -err (as in Node's own
// errors), syscall = syscall (e.g. "ioctl").
[[noreturn]] void ThrowErrno(Napi::Env env, const std::string& step, int err,
                             const char* syscall);

// Argument errors, Node style: TypeError with code ERR_INVALID_ARG_TYPE,
// RangeError with code ERR_OUT_OF_RANGE, Error with code ERR_INVALID_ARG_VALUE.
[[noreturn]] void ThrowTypeError(Napi::Env env, const std::string& msg);
[[noreturn]] void ThrowRangeError(Napi::Env env, const std::string& msg);
[[noreturn]] void ThrowInvalidValue(Napi::Env env, const std::string& msg);

// Drains OpenSSL's (thread-local) error queue into one string ("a; b"). Call it on every
// OpenSSL failure so that no stale error is left for node's own crypto code to see.
std::string OpenSslErrors();

// Throws an Error with `code` set.
[[noreturn]] void ThrowWithCode(Napi::Env env, const std::string& msg,
                                const char* code);

// Reads a Uint8Array (Buffer included) argument: its bytes and length.
void BytesArg(Napi::Env env, Napi::Value v, const char* fn, const char* what,
              uint8_t** data, size_t* len);

// The same, for an argument of exactly `want` bytes (a key, an IV, a tag):
// its bytes, or a RangeError "fn: what must be N bytes, got M".
uint8_t* FixedBytesArg(Napi::Env env, Napi::Value v, const char* fn, const char* what, size_t want);

// Reads argument `i` as a file descriptor (integer in [0, INT_MAX]).
int FdArg(const Napi::CallbackInfo& info, size_t i, const char* fn);

// Reads an optional non-negative integer no larger than `max` from obj[key];
// returns false when the property is absent or undefined.
bool OptionalUint(Napi::Object obj, const char* key, uint64_t max,
                  const char* fn, uint64_t* out);

// Reads an optional boolean from obj[key] (absent/undefined -> false return).
bool OptionalBool(Napi::Object obj, const char* key, const char* fn, bool* out);

// Closes the fd on scope exit unless released (error paths that must not leak it).
class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) close(fd_);
  }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

}  // namespace nitride
