// Conversions between 8-bit floats (taco/kernels/fp8.h) and float for the CPU kernels: E4M3 and
// E5M2 codes widen exactly through IEEE half (E5M2 is a half's top byte; E4M3's seven magnitude
// bits, shifted under a half's sign, are the half 2^-8 * value, subnormals included).
#pragma once

#include "cpu/isa.h"

#include <cstdint>

#include "taco/kernels/fp8.h"
#include "taco/kernels/kv_cache.h"

#ifdef __AVX512F__
#include <immintrin.h>
#endif

namespace taco::cpu {
inline namespace TACO_CPU_NS {

// Half bits of 32 codes: E4M3 as 2^-8 * value (NaN codes read as +-480), E5M2 as value.
#ifdef __AVX512F__
inline __m512i fp8_half_bits32(const uint8_t* codes, bool e5m2) {
  const __m512i u =
      _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes)));
  if (e5m2) return _mm512_slli_epi16(u, 8);
  const __m512i a = _mm512_slli_epi16(u, 7);  // the sign lands on bit 14: adding it moves it to 15
  return _mm512_add_epi16(a, _mm512_and_si512(a, _mm512_set1_epi16(0x4000)));
}

inline void halves_to_float(__m512i h, __m512& lo, __m512& hi) {
  lo = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
  hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
}
#endif

// dst[i] = value(src[i]) * scale for a cache of type t (kFp8E4M3 or kFp8E5M2), NaN codes as NaN.
inline void fp8_to_float(kernels::KvCacheType t, const uint8_t* src, float* dst, int64_t n,
                         float scale) {
  const bool e5m2 = t == kernels::KvCacheType::kFp8E5M2;
  int64_t i = 0;
#ifdef __AVX512F__
  const __m512 s = _mm512_set1_ps(e5m2 ? scale : scale * 256.0f);
  for (; i + 32 <= n; i += 32) {
    __m512 lo, hi;
    halves_to_float(fp8_half_bits32(src + i, e5m2), lo, hi);
    lo = _mm512_mul_ps(lo, s);
    hi = _mm512_mul_ps(hi, s);
    if (!e5m2) {  // E4M3's NaN codes
      const __m512i u =
          _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
      const __mmask32 nan = _mm512_cmpeq_epi16_mask(_mm512_and_si512(u, _mm512_set1_epi16(0x7F)),
                                                    _mm512_set1_epi16(0x7F));
      if (nan) {
        const __m512 q = _mm512_set1_ps(__builtin_nanf(""));
        lo = _mm512_mask_mov_ps(lo, static_cast<__mmask16>(nan), q);
        hi = _mm512_mask_mov_ps(hi, static_cast<__mmask16>(nan >> 16), q);
      }
    }
    _mm512_storeu_ps(dst + i, lo);
    _mm512_storeu_ps(dst + i + 16, hi);
  }
#endif
  for (; i < n; ++i) {
    dst[i] = (e5m2 ? kernels::fp8_e5m2_value(src[i]) : kernels::fp8_e4m3_value(src[i])) * scale;
  }
}

// dst[i] = code of src[i] / scale in a cache of type t (kFp8E4M3 or kFp8E5M2).
template <typename T>
void float_to_fp8(kernels::KvCacheType t, const T* src, uint8_t* dst, int64_t n, float scale) {
  if (t == kernels::KvCacheType::kFp8E5M2) {
    for (int64_t i = 0; i < n; ++i) dst[i] = kernels::fp8_e5m2_from_float(float(src[i]) / scale);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = kernels::fp8_e4m3_from_float(float(src[i]) / scale);
  }
}

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
