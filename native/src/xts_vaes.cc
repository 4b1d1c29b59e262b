// AES-256-XTS with VAES and AVX-512 (see xts_vaes.h). IEEE 1619: for data
// unit n, T = AES(K2, n as 128-bit little-endian); block j of the unit is
// C = AES(K1, P ^ T·α^j) ^ T·α^j, α the polynomial x in GF(2^128) mod
// x^128 + x^7 + x^2 + x + 1. Units are whole 512-byte multiples (the lane's
// units are 512..4096 bytes), so there is no ciphertext stealing, and one
// loop step is 32 blocks: 8 zmm registers of 4 blocks each, enough independent
// AES chains to keep the AES units busy.
#include "xts_vaes.h"
#include "aes256_ni.h"

#include <immintrin.h>
#include <openssl/crypto.h>

#include <cstdlib>
#include <cstring>

namespace nitride {

struct alignas(64) XtsVaesKey {
  __m128i enc[15];  // K1 encryption schedule
  __m128i dec[15];  // K1 equivalent-inverse-cipher schedule
  __m128i tweak[15];  // K2 encryption schedule
};

void XtsVaesKeyDeleter::operator()(XtsVaesKey* k) const {
  OPENSSL_cleanse(k, sizeof *k);
  delete k;
}

bool XtsVaesUsable() {
  static const bool usable = aes256_ni::VaesUsable(aes256_ni::kXtsImplVariable);
  return usable;
}

#pragma GCC push_options
#pragma GCC target("aes,pclmul,avx2,avx512f,avx512vl,vaes,vpclmulqdq")

namespace {

using aes256_ni::EncryptBlock;
using aes256_ni::Expand256;

// x·α^k for each 128-bit lane, k = 1 (xmm) or 4 (zmm): shift the little-endian
// 128-bit value left by k, carrying between its 64-bit halves, and fold the k
// bits shifted out at the top back in as (bits)·0x87 (carry-less product).
inline __m128i MulAlpha(__m128i t) {
  __m128i out = _mm_srli_epi64(t, 63);
  __m128i swapped = _mm_shuffle_epi32(out, 0x4e);  // low half: top bit; high half: carry
  __m128i fold = _mm_clmulepi64_si128(swapped, _mm_cvtsi32_si128(0x87), 0x00);
  __m128i carry = _mm_and_si128(swapped, _mm_set_epi64x(-1, 0));
  return _mm_xor_si128(_mm_xor_si128(_mm_slli_epi64(t, 1), carry), fold);
}

// (The maskz forms with a full mask: gcc 12's unmasked ones start from
// _mm512_undefined_epi32 and warn -Wuninitialized.)
inline __m512i MulAlpha4(__m512i t) {
  __m512i out = _mm512_maskz_srli_epi64(0xff, t, 60);
  __m512i swapped = _mm512_maskz_shuffle_epi32(0xffff, out, _MM_PERM_BADC);
  __m512i fold = _mm512_clmulepi64_epi128(swapped, _mm512_set1_epi64(0x87), 0x00);
  __m512i carry = _mm512_maskz_mov_epi64(0xaa, swapped);
  return _mm512_ternarylogic_epi64(_mm512_maskz_slli_epi64(0xff, t, 4), carry, fold, 0x96);  // a ^ b ^ c
}

constexpr int kLanes = 8;  // zmm registers per step: 32 blocks, 512 bytes

template <bool kEncrypt>
void Units(const XtsVaesKey& key, size_t unit, uint64_t first, const uint8_t* in, uint8_t* out, size_t len) {
  const __m128i* rk = kEncrypt ? key.enc : key.dec;
  __m512i k[15];
  for (int r = 0; r < 15; ++r) k[r] = _mm512_maskz_broadcast_i32x4(0xffff, rk[r]);
  for (size_t base = 0; base < len; base += unit, ++first) {
    // Tweaks of blocks 0..3: T, T·α, T·α², T·α³.
    __m128i t0 = EncryptBlock(key.tweak, _mm_set_epi64x(0, static_cast<long long>(first)));
    __m128i t1 = MulAlpha(t0), t2 = MulAlpha(t1), t3 = MulAlpha(t2);
    __m512i tw = _mm512_inserti32x4(_mm512_zextsi128_si512(t0), t1, 1);
    tw = _mm512_inserti32x4(tw, t2, 2);
    tw = _mm512_inserti32x4(tw, t3, 3);
    for (size_t off = base; off < base + unit; off += 64 * kLanes) {
      __m512i t[kLanes], x[kLanes];
      for (int l = 0; l < kLanes; ++l) {
        t[l] = tw;
        tw = MulAlpha4(tw);
        x[l] = _mm512_ternarylogic_epi64(_mm512_loadu_si512(in + off + 64 * l), t[l], k[0], 0x96);
      }
      for (int r = 1; r < 14; ++r) {
        for (int l = 0; l < kLanes; ++l) {
          x[l] = kEncrypt ? _mm512_aesenc_epi128(x[l], k[r]) : _mm512_aesdec_epi128(x[l], k[r]);
        }
      }
      for (int l = 0; l < kLanes; ++l) {
        x[l] = kEncrypt ? _mm512_aesenclast_epi128(x[l], k[14]) : _mm512_aesdeclast_epi128(x[l], k[14]);
        _mm512_storeu_si512(out + off + 64 * l, _mm512_xor_si512(x[l], t[l]));
      }
    }
  }
}

}  // namespace

XtsVaesKeyPtr XtsVaesExpand(const uint8_t* key) {
  XtsVaesKeyPtr k(new XtsVaesKey);
  Expand256(key, k->enc);
  Expand256(key + 32, k->tweak);
  // Equivalent inverse cipher (FIPS 197 5.3.5): the schedule reversed, with
  // InvMixColumns applied to the inner round keys.
  k->dec[0] = k->enc[14];
  for (int r = 1; r < 14; ++r) k->dec[r] = _mm_aesimc_si128(k->enc[14 - r]);
  k->dec[14] = k->enc[0];
  return k;
}

void XtsVaesTransform(const XtsVaesKey& key, bool encrypt, size_t unit, uint64_t first_unit, const uint8_t* in,
                      uint8_t* out, size_t len) {
  if (encrypt) {
    Units<true>(key, unit, first_unit, in, out, len);
  } else {
    Units<false>(key, unit, first_unit, in, out, len);
  }
}

#pragma GCC pop_options

}  // namespace nitride
