// AVX-512 helpers for the CPU kernels: 16-lane float loads from the model dtypes, a vector exp,
// and a 16-way horizontal sum. Only compiled where the build targets AVX-512 (-march=native on
// such a machine); callers keep a scalar path for other CPUs.
//
// GCC 12 warns (-Wmaybe-uninitialized, GCC bug 105593) about the undefined pass-through vector
// inside many of its own AVX-512 intrinsics wherever they inline; a .cpp using this header puts
// `#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"` before its first include.
#pragma once

#include "cpu/isa.h"

#ifdef __AVX512F__

#include <immintrin.h>
#include "cpu/half.h"

#include <cstdint>
#include <type_traits>

namespace taco::cpu {
inline namespace TACO_CPU_NS {
namespace avx512 {

// 16 consecutive elements widened to float.
inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const bf16* p) {
  // bfloat16 is the top half of a float32.
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}
inline __m512 load16(const fp16* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// Rounds 16 floats to the dtype (nearest even, as c10's conversions) and stores them.
inline void store16(float* p, __m512 x) { _mm512_storeu_ps(p, x); }
inline void store16(bf16* p, __m512 x) {
#ifdef __AVX512BF16__
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), (__m256i)_mm512_cvtneps_pbh(x));
#else
  const __m512i bits = _mm512_castps_si512(x);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF)));
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  const __m512i top =
      _mm512_mask_mov_epi32(_mm512_srli_epi32(rounded, 16), nan, _mm512_set1_epi32(0x7FC0));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(top));
#endif
}
inline void store16(fp16* p, __m512 x) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                      _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

// x rounded to T and widened back: the value a T intermediate holds (HF rounds per op).
template <typename T>
inline __m512 round_to(__m512 x) {
  if constexpr (std::is_same_v<T, float>) {
    return x;
  } else {
    alignas(32) T tmp[16];
    store16(tmp, x);
    return load16(tmp);
  }
}

// dst[0..n) = float(src[0..n)), n a multiple of 16.
template <typename T>
inline void widen(float* dst, const T* src, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) _mm512_storeu_ps(dst + i, load16(src + i));
}

// e^x for every lane, within about 2 ulp; lanes below -104 give 0 (covers -inf).
inline __m512 exp(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-104.0f);
  const __m512 hi = _mm512_set1_ps(88.7f);
  const __mmask16 underflow = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  x = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
  // x = n ln2 + r with |r| <= ln2 / 2; e^x = 2^n e^r.
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  // Minimax polynomial for (e^r - 1 - r) / r^2 (Cephes expf coefficients).
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~underflow), _mm512_scalef_ps(p, n));
}

// Lane j of the result = sum of the 16 lanes of v[j]. A transpose-and-add tree: 45 shuffles and
// adds for 16 sums instead of a full horizontal reduction per vector.
inline __m512 sum16(const __m512 (&v)[16]) {
  __m512 a[8], b[4], c[2];
  for (int i = 0; i < 8; ++i) {  // lanes per 128-bit quarter: [x0+x2, y0+y2, x1+x3, y1+y3]
    a[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                         _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  }
  for (int i = 0; i < 4; ++i) {  // quarters: [x, y, z, w] partial sums of four vectors
    const __m512d x = _mm512_castps_pd(a[2 * i]), y = _mm512_castps_pd(a[2 * i + 1]);
    const __m512d lo = _mm512_unpacklo_pd(x, y);
    const __m512d hi = _mm512_unpackhi_pd(x, y);
    b[i] = _mm512_add_ps(_mm512_castpd_ps(lo), _mm512_castpd_ps(hi));
  }
  for (int i = 0; i < 2; ++i) {  // add quarter pairs: [q0+q1 of b0, q2+q3 of b0, same of b1]
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  }
  return _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(c[0], c[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

}  // namespace avx512
}  // namespace TACO_CPU_NS
}  // namespace taco::cpu

#endif  // __AVX512F__
