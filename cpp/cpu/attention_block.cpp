// The AVX-512 path handles head_dim = 16 * NC (NC 1..8) with the query row and the output
// accumulator in registers; 16 keys at a time are scored together (one FMA chain per key, then
// one transpose-and-add for the 16 sums) and exponentiated as one vector. Other head sizes and
// non-AVX-512 builds take the scalar path.

#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC bug 105593, see cpu/vec_avx512.h

#include "cpu/attention_block.h"

#include <algorithm>
#include <cmath>

#include "cpu/vec.h"
#include "cpu/vec_avx512.h"

namespace taco::cpu {
namespace {

void attend_row_scalar(const AttentionRows& a, int64_t r, const float* k, const float* v) {
  const int64_t d = a.head_dim;
  const int64_t n = a.visible[r];
  const float* q = a.q + r * d;
  float* acc = a.acc + r * d;
  float scores[64];
  for (int64_t c0 = 0; c0 < n; c0 += 64) {
    const int64_t m = std::min<int64_t>(64, n - c0);
    float block_max = a.max[r];
    for (int64_t j = 0; j < m; ++j) {
      scores[j] = dot(q, k + (c0 + j) * d, d);
      block_max = std::max(block_max, scores[j]);
    }
    const float rescale = std::exp(a.max[r] - block_max);
    float sum = a.sum[r] * rescale;
    for (int64_t j = 0; j < m; ++j) {
      const float e = std::exp(scores[j] - block_max);
      sum += e;
      scale_axpy(acc, j == 0 ? rescale : 1.0f, e, v + (c0 + j) * d, d);
    }
    a.max[r] = block_max;
    a.sum[r] = sum;
  }
}

#ifdef __AVX512F__

// Scores of keys [c0, c0 + m) (m <= 16) for one query row; lanes >= m are -inf.
template <int NC>
__m512 score16(const __m512 (&q)[NC], const float* k, int64_t m) {
  __m512 part[16];
  for (int64_t j = 0; j < 16; ++j) {
    if (j >= m) {
      part[j] = _mm512_setzero_ps();
      continue;
    }
    const float* kj = k + j * 16 * NC;
    __m512 s = _mm512_mul_ps(q[0], _mm512_loadu_ps(kj));
    for (int c = 1; c < NC; ++c) s = _mm512_fmadd_ps(q[c], _mm512_loadu_ps(kj + 16 * c), s);
    part[j] = s;
  }
  const __mmask16 valid = static_cast<__mmask16>((1u << m) - 1u);
  return _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), valid, avx512::sum16(part));
}

template <int NC>
void attend_row_avx512(const AttentionRows& a, int64_t r, const float* k, const float* v) {
  constexpr int64_t d = 16 * NC;
  const int64_t n = a.visible[r];
  __m512 q[NC], acc[NC];
  for (int c = 0; c < NC; ++c) {
    q[c] = _mm512_loadu_ps(a.q + r * d + 16 * c);
    acc[c] = _mm512_loadu_ps(a.acc + r * d + 16 * c);
  }
  float max = a.max[r];
  float sum = a.sum[r];
  alignas(64) float p[16];
  for (int64_t c0 = 0; c0 < n; c0 += 16) {
    const int64_t m = std::min<int64_t>(16, n - c0);
    const __m512 s = score16<NC>(q, k + c0 * d, m);
    const float block_max = _mm512_reduce_max_ps(s);
    if (block_max > max) {
      const float rescale = std::exp(max - block_max);  // 0 on the first keys (max = -inf)
      for (int c = 0; c < NC; ++c) acc[c] = _mm512_mul_ps(acc[c], _mm512_set1_ps(rescale));
      sum *= rescale;
      max = block_max;
    }
    const __m512 e = avx512::exp(_mm512_sub_ps(s, _mm512_set1_ps(max)));
    sum += _mm512_reduce_add_ps(e);
    _mm512_store_ps(p, e);
    for (int64_t j = 0; j < m; ++j) {
      const __m512 w = _mm512_set1_ps(p[j]);
      const float* vj = v + (c0 + j) * d;
      for (int c = 0; c < NC; ++c) {
        acc[c] = _mm512_fmadd_ps(w, _mm512_loadu_ps(vj + 16 * c), acc[c]);
      }
    }
  }
  for (int c = 0; c < NC; ++c) _mm512_storeu_ps(a.acc + r * d + 16 * c, acc[c]);
  a.max[r] = max;
  a.sum[r] = sum;
}

template <int NC>
void attend_rows_avx512(const AttentionRows& a, const float* k, const float* v) {
  for (int64_t r = 0; r < a.rows; ++r) {
    if (a.visible[r] > 0) attend_row_avx512<NC>(a, r, k, v);
  }
}

using RowsFn = void (*)(const AttentionRows&, const float*, const float*);
constexpr RowsFn kAvx512ByChunks[] = {nullptr,
                                      attend_rows_avx512<1>,
                                      attend_rows_avx512<2>,
                                      attend_rows_avx512<3>,
                                      attend_rows_avx512<4>,
                                      attend_rows_avx512<5>,
                                      attend_rows_avx512<6>,
                                      attend_rows_avx512<7>,
                                      attend_rows_avx512<8>};

#endif  // __AVX512F__

}  // namespace

void attend_block(const AttentionRows& rows, const float* k, const float* v) {
#ifdef __AVX512F__
  if (rows.head_dim % 16 == 0 && rows.head_dim / 16 <= 8) {
    kAvx512ByChunks[rows.head_dim / 16](rows, k, v);
    return;
  }
#endif
  for (int64_t r = 0; r < rows.rows; ++r) {
    if (rows.visible[r] > 0) attend_row_scalar(rows, r, k, v);
  }
}

}  // namespace taco::cpu
