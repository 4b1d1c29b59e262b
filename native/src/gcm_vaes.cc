// AES-256-GCM with VAES, VPCLMULQDQ and AVX-512 (see gcm_vaes.h), after the
// design of Linux's arch/x86/crypto/aes-gcm-avx10-x86_64.S:
//  - CTR: 4 counter blocks per zmm register, 4 registers (256 bytes) per
//    step, so 16 independent AES chains hide the AESENC latency.
//  - GHASH works on byte-reflected blocks (one VPSHUFB each) and keys
//    pre-multiplied as below, so that a 128x128 carry-less product plus a
//    two-fold Montgomery-style reduction by x^128 + x^7 + x^2 + x + 1 (the
//    constant 0xc2000000_00000000_00000000_00000001) gives the field product
//    without bit shifts. Each step multiplies its 16 blocks by H^16..H^1
//    (the sum of the products needs one reduction per step, not per block).
//  - Lengths that are not a multiple of 256 end with a 1-4 register step
//    using byte-masked loads and stores (AVX512BW), never reading or writing
//    past the buffers.
// Key material stays in the key object: `objdump -d` of the built addon shows
// no vector register stored to the stack in Crypt<>, HashBytes or
// GcmVaesExpand (the round keys and H powers are memory operands).
#include "gcm_vaes.h"
#include "aes256_ni.h"

#include <immintrin.h>
#include <openssl/crypto.h>

#include <cstdlib>
#include <cstring>

namespace nitride {

struct alignas(64) GcmVaesKey {
  __m512i rk[15];  // AES-256 encryption schedule, each round key in all 4 lanes
  __m128i rk128[15];
  // Pre-multiplied GHASH key powers H^16..H^1, then 4 zero blocks: a step of
  // n <= 16 blocks loads its powers H^n..H^1 as whole registers from
  // hpow + 16 - n without reading past the table.
  __m128i hpow[20];
};

void GcmVaesKeyDeleter::operator()(GcmVaesKey* k) const {
  OPENSSL_cleanse(k, sizeof *k);
  delete k;
}

bool GcmVaesUsable() {
  static const bool usable = aes256_ni::VaesUsable(aes256_ni::kGcmImplVariable);
  return usable;
}

#pragma GCC push_options
#pragma GCC target("aes,pclmul,avx2,avx512f,avx512bw,avx512vl,vaes,vpclmulqdq")

namespace {

// (The maskz forms with a full mask: gcc 12's unmasked ones start from
// _mm512_undefined_epi32 and warn -Wuninitialized.)
inline __m512i Bcast(__m128i v) { return _mm512_maskz_broadcast_i32x4(0xffff, v); }
inline __m128i Bswap128() { return _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
inline __m128i Poly128() { return _mm_set_epi64x(static_cast<long long>(0xc200000000000000ULL), 1); }
inline __m512i Swap64(__m512i v) { return _mm512_maskz_shuffle_epi32(0xffff, v, _MM_PERM_BADC); }
inline __m512i Xor3(__m512i a, __m512i b, __m512i c) { return _mm512_ternarylogic_epi64(a, b, c, 0x96); }

// a·b (both pre-multiplied, byte-reflected), xmm.
inline __m128i Mul(__m128i a, __m128i b) {
  const __m128i poly = Poly128();
  __m128i lo = _mm_clmulepi64_si128(a, b, 0x00);
  __m128i mi = _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x01), _mm_clmulepi64_si128(a, b, 0x10));
  __m128i hi = _mm_clmulepi64_si128(a, b, 0x11);
  // Fold the low 64 bits into the next 128 twice (each fold adds a multiple
  // of the field polynomial that cancels them).
  mi = _mm_xor_si128(mi, _mm_xor_si128(_mm_shuffle_epi32(lo, 0x4e), _mm_clmulepi64_si128(lo, poly, 0x10)));
  return _mm_xor_si128(hi, _mm_xor_si128(_mm_shuffle_epi32(mi, 0x4e), _mm_clmulepi64_si128(mi, poly, 0x10)));
}

// GHASH of R registers of data blocks (raw bytes, zero past the data) into
// x, block i of the step multiplied by pow[i].
template <int R>
inline __m128i Ghash(__m128i x, const __m512i* d, const __m128i* pow) {
  const __m512i bswap = Bcast(Bswap128());
  __m512i lo = _mm512_setzero_si512(), mi = lo, hi = lo;
  #pragma GCC unroll 16
  for (int j = 0; j < R; ++j) {
    __m512i b = _mm512_shuffle_epi8(d[j], bswap);
    if (j == 0) b = _mm512_xor_si512(b, _mm512_zextsi128_si512(x));
    const __m512i h = _mm512_loadu_si512(pow + 4 * j);
    lo = _mm512_xor_si512(lo, _mm512_clmulepi64_epi128(b, h, 0x00));
    mi = Xor3(mi, _mm512_clmulepi64_epi128(b, h, 0x01), _mm512_clmulepi64_epi128(b, h, 0x10));
    hi = _mm512_xor_si512(hi, _mm512_clmulepi64_epi128(b, h, 0x11));
  }
  const __m512i poly = Bcast(Poly128());
  mi = Xor3(mi, Swap64(lo), _mm512_clmulepi64_epi128(lo, poly, 0x10));
  hi = Xor3(hi, Swap64(mi), _mm512_clmulepi64_epi128(mi, poly, 0x10));
  // The reduction is linear: reduce the 4 lanes' sums, then add the lanes.
  __m256i h2 = _mm256_xor_si256(_mm512_maskz_extracti64x4_epi64(0xf, hi, 0), _mm512_maskz_extracti64x4_epi64(0xf, hi, 1));
  return _mm_xor_si128(_mm256_castsi256_si128(h2), _mm256_extracti128_si256(h2, 1));
}

// Bytes of register j that belong to a step of n bytes.
inline __mmask64 ByteMask(size_t n, int j) {
  const size_t start = 64 * static_cast<size_t>(j);
  if (n >= start + 64) return ~__mmask64{0};
  if (n <= start) return 0;
  return (__mmask64{1} << (n - start)) - 1;
}

template <int R, bool kPartial>
inline void Load(const uint8_t* p, size_t n, __m512i* d) {
  #pragma GCC unroll 16
  for (int j = 0; j < R; ++j) {
    d[j] = kPartial ? _mm512_maskz_loadu_epi8(ByteMask(n, j), p + 64 * j) : _mm512_loadu_si512(p + 64 * j);
  }
}

// GHASH of n bytes (a step: 64·(R-1) < n <= 64·R) into x.
template <int R, bool kPartial>
inline __m128i HashStep(const GcmVaesKey& k, __m128i x, const uint8_t* p, size_t n) {
  __m512i d[R];
  Load<R, kPartial>(p, n, d);
  return Ghash<R>(x, d, k.hpow + 16 - (n + 15) / 16);
}

// One CTR step of n bytes (64·(R-1) < n <= 64·R) from in to out, hashing
// ciphertext into x. `ctr` holds the byte-reflected counter blocks of the
// step's first register; advanced by R registers.
// Open hashes its input while the AES rounds run. Seal cannot hash this
// step's ciphertext before its rounds end, so (as Linux's
// aes-gcm-avx10-x86_64.S) it hashes the previous full step's ciphertext,
// `pend` (if `hash_pend`), during the rounds, and leaves a full step's own
// in `pend` for the next step or the caller; a partial (last) step hashes
// its own at the end. The order of the blocks in GHASH is unchanged.
template <int R, bool kSeal, bool kPartial>
inline __m128i CtrStep(const GcmVaesKey& k, __m512i& ctr, __m128i x, const uint8_t* in, uint8_t* out, size_t n,
                       __m512i* pend, bool hash_pend) {
  const __m512i bswap = Bcast(Bswap128());
  const __m512i four = _mm512_maskz_broadcast_i32x4(0xffff, _mm_cvtsi32_si128(4));
  __m512i s[R], d[R];
  #pragma GCC unroll 16
  for (int j = 0; j < R; ++j) {
    s[j] = _mm512_xor_si512(_mm512_shuffle_epi8(ctr, bswap), k.rk[0]);
    ctr = _mm512_add_epi32(ctr, four);  // inc32: the low 32 bits wrap alone
  }
  Load<R, kPartial>(in, n, d);
  const __m128i* pow = k.hpow + 16 - (n + 15) / 16;
  if (!kSeal) {
    x = Ghash<R>(x, d, pow);
  } else if (hash_pend) {
    x = Ghash<4>(x, pend, k.hpow);
  }
  #pragma GCC unroll 16
  for (int r = 1; r < 14; ++r) {
    #pragma GCC unroll 16
    for (int j = 0; j < R; ++j) s[j] = _mm512_aesenc_epi128(s[j], k.rk[r]);
  }
  #pragma GCC unroll 16
  for (int j = 0; j < R; ++j) {
    s[j] = _mm512_aesenclast_epi128(s[j], k.rk[14]);
    if (kPartial) {
      const __mmask64 m = ByteMask(n, j);
      d[j] = _mm512_maskz_xor_epi64(0xff, s[j], d[j]);
      d[j] = _mm512_maskz_mov_epi8(m, d[j]);  // zero past the data, for GHASH
      _mm512_mask_storeu_epi8(out + 64 * j, m, d[j]);
    } else {
      d[j] = _mm512_xor_si512(s[j], d[j]);
      _mm512_storeu_si512(out + 64 * j, d[j]);
    }
  }
  if (kSeal && kPartial) x = Ghash<R>(x, d, pow);
  if (kSeal && !kPartial) {
    #pragma GCC unroll 16
    for (int j = 0; j < R; ++j) pend[j] = d[j];
  }
  return x;
}

constexpr size_t kStep = 256;  // bytes per full step: 4 registers, 16 blocks

__m128i HashBytes(const GcmVaesKey& k, __m128i x, const uint8_t* p, size_t n) {
  size_t off = 0;
  for (; n - off >= kStep; off += kStep) x = HashStep<4, false>(k, x, p + off, kStep);
  const size_t rest = n - off;
  switch ((rest + 63) / 64) {
    case 1: return HashStep<1, true>(k, x, p + off, rest);
    case 2: return HashStep<2, true>(k, x, p + off, rest);
    case 3: return HashStep<3, true>(k, x, p + off, rest);
    case 4: return HashStep<4, true>(k, x, p + off, rest);
    default: return x;
  }
}

// The whole transform; returns the tag (as a vector, not yet compared).
template <bool kSeal>
__m128i Crypt(const GcmVaesKey& k, const uint8_t iv[12], const uint8_t* aad, size_t aad_len, const uint8_t* in,
              uint8_t* out, size_t len) {
  // J0 = IV || 0x00000001; the data's counter blocks start at J0 + 1.
  const __m128i j0 = _mm_insert_epi32(_mm_maskz_loadu_epi8(0x0fff, iv), 0x01000000, 3);
  __m128i x = HashBytes(k, _mm_setzero_si128(), aad, aad_len);
  __m512i ctr = _mm512_add_epi32(Bcast(_mm_shuffle_epi8(j0, Bswap128())),
                                 _mm512_set_epi32(0, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 1));
  size_t off = 0;
  __m512i pend[4];  // seal: ciphertext of the last full step, not hashed yet
  bool hash_pend = false;
  for (; len - off >= kStep; off += kStep) {
    x = CtrStep<4, kSeal, false>(k, ctr, x, in + off, out + off, kStep, pend, hash_pend);
    hash_pend = kSeal;
  }
  const size_t rest = len - off;
  switch ((rest + 63) / 64) {
    case 1: x = CtrStep<1, kSeal, true>(k, ctr, x, in + off, out + off, rest, pend, hash_pend); break;
    case 2: x = CtrStep<2, kSeal, true>(k, ctr, x, in + off, out + off, rest, pend, hash_pend); break;
    case 3: x = CtrStep<3, kSeal, true>(k, ctr, x, in + off, out + off, rest, pend, hash_pend); break;
    case 4: x = CtrStep<4, kSeal, true>(k, ctr, x, in + off, out + off, rest, pend, hash_pend); break;
    default:
      if (hash_pend) x = Ghash<4>(x, pend, k.hpow);
      break;
  }
  // The lengths block (bit lengths of AAD and data, big-endian), reflected.
  const __m128i lens = _mm_set_epi64x(static_cast<long long>(aad_len * 8), static_cast<long long>(len * 8));
  x = Mul(_mm_xor_si128(x, lens), k.hpow[15]);
  return _mm_xor_si128(_mm_shuffle_epi8(x, Bswap128()), aes256_ni::EncryptBlock(k.rk128, j0));
}

}  // namespace

GcmVaesKeyPtr GcmVaesExpand(const uint8_t* key) {
  GcmVaesKeyPtr k(new GcmVaesKey);
  aes256_ni::Expand256(key, k->rk128);
  #pragma GCC unroll 16
  for (int r = 0; r < 15; ++r) k->rk[r] = Bcast(k->rk128[r]);
  // H = AES(K, 0), reflected, then times x^-1 (the left shift with the
  // carries folded back by the polynomial) so that Mul needs no shift.
  __m128i h = _mm_shuffle_epi8(aes256_ni::EncryptBlock(k->rk128, _mm_setzero_si128()), Bswap128());
  __m128i carry = _mm_srai_epi32(_mm_shuffle_epi32(h, 0xd3), 31);  // bits 127, -, 63, 127 as dword masks
  carry = _mm_and_si128(carry, _mm_set_epi32(static_cast<int>(0xc2000000), 1, 0, 1));
  k->hpow[15] = _mm_xor_si128(_mm_add_epi64(h, h), carry);
  for (int i = 14; i >= 0; --i) k->hpow[i] = Mul(k->hpow[i + 1], k->hpow[15]);
  for (int i = 16; i < 20; ++i) k->hpow[i] = _mm_setzero_si128();
  return k;
}

void GcmVaesSeal(const GcmVaesKey& key, const uint8_t iv[12], const uint8_t* aad, size_t aad_len, const uint8_t* in,
                 uint8_t* out, size_t len, uint8_t tag[16]) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(tag), Crypt<true>(key, iv, aad, aad_len, in, out, len));
}

bool GcmVaesOpen(const GcmVaesKey& key, const uint8_t iv[12], const uint8_t* aad, size_t aad_len, const uint8_t* in,
                 uint8_t* out, size_t len, const uint8_t tag[16]) {
  const __m128i diff = _mm_xor_si128(Crypt<false>(key, iv, aad, aad_len, in, out, len),
                                     _mm_loadu_si128(reinterpret_cast<const __m128i*>(tag)));
  return _mm_testz_si128(diff, diff) != 0;  // all 128 bits, no early exit
}

#pragma GCC pop_options

}  // namespace nitride
