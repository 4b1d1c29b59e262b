// AES-256 key expansion and one-block encryption with AES-NI, shared by the
// VAES modes (xts_vaes.cc, gcm_vaes.cc). Compiled for AES-NI by attribute
// (the addon is built for baseline x86-64); call only where the CPU has it.
#ifndef NITRIDE_AES256_NI_H_
#define NITRIDE_AES256_NI_H_

#include <immintrin.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace nitride {
namespace aes256_ni {

#define NITRIDE_AESNI __attribute__((target("aes")))

// One step of the AES-256 key schedule: `prev2` is the round key two back,
// `assist` the broadcast word of aeskeygenassist of the previous one (0xff:
// RotWord+SubWord+Rcon, even steps; 0xaa: SubWord, odd steps).
NITRIDE_AESNI inline __m128i ExpandStep(__m128i prev2, __m128i assist) {
  prev2 = _mm_xor_si128(prev2, _mm_slli_si128(prev2, 4));
  prev2 = _mm_xor_si128(prev2, _mm_slli_si128(prev2, 4));
  prev2 = _mm_xor_si128(prev2, _mm_slli_si128(prev2, 4));
  return _mm_xor_si128(prev2, assist);
}

NITRIDE_AESNI inline void Expand256(const uint8_t* key, __m128i rk[15]) {
  rk[0] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(key));
  rk[1] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(key + 16));
#define NITRIDE_EXPAND(i, rcon)                                                         \
  rk[i] = ExpandStep(rk[i - 2], _mm_shuffle_epi32(_mm_aeskeygenassist_si128(rk[i - 1], rcon), 0xff)); \
  if (i + 1 < 15)                                                                       \
    rk[i + 1] = ExpandStep(rk[i - 1], _mm_shuffle_epi32(_mm_aeskeygenassist_si128(rk[i], 0), 0xaa));
  NITRIDE_EXPAND(2, 0x01)
  NITRIDE_EXPAND(4, 0x02)
  NITRIDE_EXPAND(6, 0x04)
  NITRIDE_EXPAND(8, 0x08)
  NITRIDE_EXPAND(10, 0x10)
  NITRIDE_EXPAND(12, 0x20)
#undef NITRIDE_EXPAND
  rk[14] = ExpandStep(rk[12], _mm_shuffle_epi32(_mm_aeskeygenassist_si128(rk[13], 0x40), 0xff));
}

NITRIDE_AESNI inline __m128i EncryptBlock(const __m128i rk[15], __m128i b) {
  b = _mm_xor_si128(b, rk[0]);
  for (int r = 1; r < 14; ++r) b = _mm_aesenc_si128(b, rk[r]);
  return _mm_aesenclast_si128(b, rk[14]);
}

#undef NITRIDE_AESNI

// The environment variables that force OpenSSL's code instead of the VAES
// one (A/B measurements, diagnostics), and the one value they take. Unset or
// empty means the fastest code the CPU runs; the daemon refuses any other
// value (a typo would silently measure the wrong code): cipherImplSwitches.
constexpr const char* kXtsImplVariable = "NITRIDE_XTS_IMPL";
constexpr const char* kGcmImplVariable = "NITRIDE_GCM_IMPL";
constexpr const char* kForceOpenssl = "openssl";

// Whether a VAES mode may run: the CPU has VAES, VPCLMULQDQ and AVX-512
// (F/BW/VL; libgcc's avx512f test includes the OS saving the zmm state,
// XCR0), unless the environment variable named `force_openssl` is "openssl".
inline bool VaesUsable(const char* force_openssl) {
  const char* impl = getenv(force_openssl);
  if (impl != nullptr && strcmp(impl, kForceOpenssl) == 0) return false;
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("vaes") &&
         __builtin_cpu_supports("vpclmulqdq") && __builtin_cpu_supports("aes") &&
         __builtin_cpu_supports("pclmul");
}

}  // namespace aes256_ni
}  // namespace nitride

#endif  // NITRIDE_AES256_NI_H_
