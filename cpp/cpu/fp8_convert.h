// Conversions between 8-bit floats (taco/kernels/fp8.h) and float for the CPU kernels: E4M3 and
// E5M2 codes widen exactly through IEEE half (E5M2 is a half's top byte; E4M3's seven magnitude
// bits, shifted under a half's sign, are the half 2^-8 * value, subnormals included).
#pragma once

#include "cpu/isa.h"

#include <cmath>
#include <cstdint>

#include "taco/kernels/fp8.h"
#include "taco/kernels/kv_cache.h"

#ifdef __AVX512F__
#include <immintrin.h>

#include "cpu/vec_avx512.h"
#endif

namespace taco::cpu {
inline namespace TACO_CPU_NS {

#ifdef __AVX512F__
// 32 codes as 16-bit lanes.
inline __m512i fp8_codes32(const uint8_t* codes) {
  return _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes)));
}

// Half bits of 32 codes u (fp8_codes32): E4M3 as 2^-8 * value (NaN codes read as +-480), E5M2
// as value.
inline __m512i fp8_half_bits32(__m512i u, bool e5m2) {
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
    const __m512i u = fp8_codes32(src + i);
    __m512 lo, hi;
    halves_to_float(fp8_half_bits32(u, e5m2), lo, hi);
    lo = _mm512_mul_ps(lo, s);
    hi = _mm512_mul_ps(hi, s);
    if (!e5m2) {  // E4M3's NaN codes
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

#ifdef __AVX512F__
// The codes of 16 floats x (already divided by the scale), round to nearest even, saturating:
// mbits mantissa bits, exponent bias `bias`, largest finite value max, NaN as nan_code. Normal
// results round the float's bits directly (add half an output ulp minus one, plus the kept
// lowest bit, then shift); subnormal ones are multiples of the smallest subnormal, rounded by
// the float-to-int conversion (nearest even).
inline __m128i fp8_codes16(__m512 x, int mbits, int bias, float max, int nan_code) {
  const __m512i bits = _mm512_castps_si512(x);
  const __m512i sign = _mm512_and_si512(_mm512_srli_epi32(bits, 24), _mm512_set1_epi32(0x80));
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  const __m512 a = _mm512_min_ps(_mm512_abs_ps(x), _mm512_set1_ps(max));
  const int shift = 23 - mbits;
  const __m512i u = _mm512_castps_si512(a);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, shift), _mm512_set1_epi32(1));
  const __m512i rounded =
      _mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32((1 << (shift - 1)) - 1)));
  const __m512i normal =
      _mm512_sub_epi32(_mm512_srli_epi32(rounded, shift), _mm512_set1_epi32((127 - bias) << mbits));
  const float min_normal = std::ldexp(1.0f, 1 - bias);
  const __m512i sub =
      _mm512_cvtps_epi32(_mm512_mul_ps(a, _mm512_set1_ps(std::ldexp(1.0f, mbits - 1 + bias))));
  const __mmask16 is_sub = _mm512_cmp_ps_mask(a, _mm512_set1_ps(min_normal), _CMP_LT_OQ);
  __m512i code = _mm512_or_si512(_mm512_mask_mov_epi32(normal, is_sub, sub), sign);
  code = _mm512_mask_mov_epi32(code, nan, _mm512_set1_epi32(nan_code));
  return _mm512_cvtepi32_epi8(code);
}
#endif

// dst[i] = code of src[i] / scale in a cache of type t (kFp8E4M3 or kFp8E5M2).
template <typename T>
void float_to_fp8(kernels::KvCacheType t, const T* src, uint8_t* dst, int64_t n, float scale) {
  const bool e5m2 = t == kernels::KvCacheType::kFp8E5M2;
  int64_t i = 0;
#ifdef __AVX512F__
  const __m512 inv = _mm512_set1_ps(scale);
  for (; i + 16 <= n; i += 16) {
    const __m512 x = _mm512_div_ps(avx512::load16(src + i), inv);
    const __m128i c = e5m2 ? fp8_codes16(x, 2, 15, kernels::kFp8E5M2Max, 0x7E)
                           : fp8_codes16(x, 3, 7, kernels::kFp8E4M3Max, 0x7F);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), c);
  }
#endif
  for (; i < n; ++i) {
    const float x = float(src[i]) / scale;
    dst[i] = e5m2 ? kernels::fp8_e5m2_from_float(x) : kernels::fp8_e4m3_from_float(x);
  }
}

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
