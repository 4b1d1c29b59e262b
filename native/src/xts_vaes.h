// AES-256-XTS with VAES/AVX-512 (xts_vaes.cc): the same transform as xts.cc's
// OpenSSL path (plain64 tweaks, whole data units), 4 blocks per instruction.
// OpenSSL 3.0 (node 20's) has no VAES XTS; its AES-NI XTS cost ~210 µs per
// MiB here, this about half (scripts/bench-xts.mjs: XtsCipher vs the OpenSSL one-shot).
#ifndef NITRIDE_XTS_VAES_H_
#define NITRIDE_XTS_VAES_H_

#include <cstddef>
#include <cstdint>
#include <memory>

namespace nitride {

// Round keys of a 64-byte XTS key; cleansed when freed.
struct XtsVaesKey;
struct XtsVaesKeyDeleter {
  void operator()(XtsVaesKey* k) const;
};
using XtsVaesKeyPtr = std::unique_ptr<XtsVaesKey, XtsVaesKeyDeleter>;

// True if this CPU and OS run VAES, VPCLMULQDQ and AVX-512 (F, VL) code and
// NITRIDE_XTS_IMPL is not "openssl" (read once; that setting exists so that
// tests can compare both implementations in one machine).
bool XtsVaesUsable();

// Expands key (64 bytes: data key, then tweak key). Only if XtsVaesUsable().
XtsVaesKeyPtr XtsVaesExpand(const uint8_t* key);

// Transforms len bytes (whole data units of `unit` bytes, unit a multiple of
// 512) from in to out (may be the same memory), the first unit numbered
// first_unit. Cannot fail. Any thread, concurrently.
void XtsVaesTransform(const XtsVaesKey& key, bool encrypt, size_t unit,
                      uint64_t first_unit, const uint8_t* in, uint8_t* out,
                      size_t len);

}  // namespace nitride

#endif  // NITRIDE_XTS_VAES_H_
