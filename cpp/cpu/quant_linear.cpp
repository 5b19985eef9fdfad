// Each thread takes a contiguous range of W rows and streams their blocks once; every x row is
// dotted with a W row while its blocks sit in L1. x is widened to float once per call, with
// per-block sums for the types with an offset (Q4_0's -8, Q4_1's m): a block then costs one
// multiply-add of widened quants per 16 values and one scale.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC bug 105593, see cpu/vec_avx512.h

#include "cpu/quant_linear.h"

#include <cstring>
#include <vector>

#include "cpu/dispatch.h"
#include "cpu/half.h"
#include "cpu/parallel.h"

#ifdef __AVX512F__
#include <immintrin.h>
#endif

namespace taco::cpu {
inline namespace TACO_CPU_NS {
namespace {

using kernels::kQuantBlock;
using kernels::QuantType;

float half_at(const uint8_t* p) {
  fp16 h;
  std::memcpy(&h, p, sizeof(h));
  return static_cast<float>(h);
}

// Sum over the row's blocks of (block dot x), x the float row and xsum its per-block sums.
template <QuantType Q>
float dot_row(const uint8_t* w, const float* x, const float* xsum, int64_t nb) {
  constexpr int64_t bytes = kernels::quant_block_bytes(Q);
  float offset = 0;  // the constant parts: sum over blocks of (m or -8 d) * xsum
#ifdef __AVX512F__
  __m512 acc = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, w += bytes) {
    const float d = half_at(w);
    const float* xb = x + b * kQuantBlock;
    __m512 part;
    if constexpr (Q == QuantType::kQ8_0) {
      const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2));
      const __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 18));
      part = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)), _mm512_loadu_ps(xb));
      part = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)), _mm512_loadu_ps(xb + 16),
                             part);
    } else {
      const uint8_t* qs = w + (Q == QuantType::kQ4_1 ? 4 : 2);
      const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
      const __m512 lo = _mm512_cvtepi32_ps(_mm512_and_si512(q, _mm512_set1_epi32(15)));
      const __m512 hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(q, 4));
      part = _mm512_fmadd_ps(hi, _mm512_loadu_ps(xb + 16), _mm512_mul_ps(lo, _mm512_loadu_ps(xb)));
      offset += (Q == QuantType::kQ4_1 ? half_at(w + 2) : -8.0f * d) * xsum[b];
    }
    acc = _mm512_fmadd_ps(part, _mm512_set1_ps(d), acc);
  }
  return _mm512_reduce_add_ps(acc) + offset;
#else
  float acc = 0;
  for (int64_t b = 0; b < nb; ++b, w += bytes) {
    const float d = half_at(w);
    const float* xb = x + b * kQuantBlock;
    float part = 0;
    if constexpr (Q == QuantType::kQ8_0) {
      const auto* q = reinterpret_cast<const int8_t*>(w + 2);
      for (int i = 0; i < kQuantBlock; ++i) part += static_cast<float>(q[i]) * xb[i];
    } else {
      const uint8_t* qs = w + (Q == QuantType::kQ4_1 ? 4 : 2);
      for (int i = 0; i < 16; ++i) {
        part +=
            static_cast<float>(qs[i] & 15) * xb[i] + static_cast<float>(qs[i] >> 4) * xb[i + 16];
      }
      offset += (Q == QuantType::kQ4_1 ? half_at(w + 2) : -8.0f * d) * xsum[b];
    }
    acc += d * part;
  }
  return acc + offset;
#endif
}

template <QuantType Q, typename T>
void run(const QuantLinearParams& p) {
  const int64_t nb = p.k / kQuantBlock;
  std::vector<float> x(p.m * p.k);
  std::vector<float> xsum(p.m * nb);
  for (int64_t i = 0; i < p.m; ++i) {
    const T* src = static_cast<const T*>(p.x) + i * p.x_stride;
    for (int64_t c = 0; c < p.k; ++c) x[i * p.k + c] = static_cast<float>(src[c]);
    for (int64_t b = 0; b < nb; ++b) {
      float s = 0;
      for (int64_t c = 0; c < kQuantBlock; ++c) s += x[i * p.k + b * kQuantBlock + c];
      xsum[i * nb + b] = s;
    }
  }
  const int64_t row_bytes = nb * kernels::quant_block_bytes(Q);
  const auto* w = static_cast<const uint8_t*>(p.w);
  parallel_for(0, p.n, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t i = 0; i < p.m; ++i) {
        const float v = dot_row<Q>(w + r * row_bytes, x.data() + i * p.k, xsum.data() + i * nb, nb);
        static_cast<T*>(p.out)[i * p.out_stride + r] = T(v);
      }
    }
  });
}

template <typename T>
void run_typed(const QuantLinearParams& p) {
  switch (p.wtype) {
    case QuantType::kQ8_0:
      return run<QuantType::kQ8_0, T>(p);
    case QuantType::kQ4_0:
      return run<QuantType::kQ4_0, T>(p);
    case QuantType::kQ4_1:
      return run<QuantType::kQ4_1, T>(p);
  }
}

}  // namespace

void quant_linear(const QuantLinearParams& p) {
  throw_if(p.check(), "quant_linear");
  if (p.m == 0) return;
  if (p.dtype == kernels::DType::kFloat32) return run_typed<float>(p);
  run_typed<bf16>(p);
}

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
