// AES-256-GCM with VAES/VPCLMULQDQ/AVX-512 (gcm_vaes.cc), 96-bit IVs only:
// the VPC data plane's per-frame cipher. Node 20's OpenSSL 3.0 has no VAES
// GCM (about 0.52 µs per 1,386-byte frame here, plus its per-message EVP
// calls); scripts/bench-gcm.mjs compares the two.
#ifndef NITRIDE_GCM_VAES_H_
#define NITRIDE_GCM_VAES_H_

#include <cstddef>
#include <cstdint>
#include <memory>

namespace nitride {

// Round keys and GHASH key powers of one AES-256 key; cleansed when freed.
struct GcmVaesKey;
struct GcmVaesKeyDeleter {
  void operator()(GcmVaesKey* k) const;
};
using GcmVaesKeyPtr = std::unique_ptr<GcmVaesKey, GcmVaesKeyDeleter>;

// True if this CPU and OS run VAES, VPCLMULQDQ and AVX-512 (F, BW, VL) code
// and NITRIDE_GCM_IMPL is not "openssl" (read once; that setting exists so
// that tests and benchmarks can compare both implementations on one machine).
bool GcmVaesUsable();

// Expands a 32-byte key. Only if GcmVaesUsable().
GcmVaesKeyPtr GcmVaesExpand(const uint8_t* key);

// Encrypts len bytes from in to out (the same memory or not overlapping) and
// writes the 16-byte tag. Cannot fail.
void GcmVaesSeal(const GcmVaesKey& key, const uint8_t iv[12], const uint8_t* aad, size_t aad_len,
                 const uint8_t* in, uint8_t* out, size_t len, uint8_t tag[16]);

// Decrypts len bytes from in to out (the same memory or not overlapping) and
// compares the tag in constant time: false if it does not match (out then
// holds unauthenticated plaintext, which the caller must discard).
bool GcmVaesOpen(const GcmVaesKey& key, const uint8_t iv[12], const uint8_t* aad, size_t aad_len,
                 const uint8_t* in, uint8_t* out, size_t len, const uint8_t tag[16]);

}  // namespace nitride

#endif  // NITRIDE_GCM_VAES_H_
