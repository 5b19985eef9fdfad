// The AVX-512 path handles head_dim = 16 * NC (NC 1..8) with the query row and the output
// accumulator in registers; 16 keys at a time are scored together (one FMA chain per key, then
// one transpose-and-add for the 16 sums) and exponentiated as one vector. Other head sizes and
// non-AVX-512 builds take the scalar path.

#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC bug 105593, see cpu/vec_avx512.h
#pragma GCC diagnostic ignored "-Wuninitialized"        // the same, in _mm512_reduce_*_ps

#include "cpu/attention_block.h"
#include "cpu/isa.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <type_traits>

#include "cpu/vec.h"
#include "cpu/vec_avx512.h"

namespace taco::cpu {
inline namespace TACO_CPU_NS {
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

// Scores of keys [c0, c0 + m) (m <= 16) for one query row held as NC float vectors; lanes >= m
// are -inf.
template <int NC>
struct FloatQuery {
  __m512 q[NC];
  FloatQuery(const AttentionRows& a, int64_t r) {
    for (int c = 0; c < NC; ++c) q[c] = _mm512_loadu_ps(a.q + r * 16 * NC + 16 * c);
  }
  __m512 score16(const float* k, int64_t m) const {
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
};

#ifdef __AVX512BF16__
// The same over bf16 keys: a query row as NC / 2 vectors of 32 bf16, 32 products per dpbf16.
template <int NC>
struct Bf16Query {
  static_assert(NC % 2 == 0);
  __m512bh q[NC / 2];
  __m512 scale;
  Bf16Query(const bf16* q_rows, int64_t r, float s) : scale(_mm512_set1_ps(s)) {
    for (int c = 0; c < NC / 2; ++c) {
      q[c] = (__m512bh)_mm512_loadu_si512(q_rows + r * 16 * NC + 32 * c);
    }
  }
  __m512 score16(const bf16* k, int64_t m) const {
    __m512 part[16];
    for (int64_t j = 0; j < 16; ++j) {
      part[j] = _mm512_setzero_ps();
      if (j >= m) continue;
      const bf16* kj = k + j * 16 * NC;
      for (int c = 0; c < NC / 2; ++c) {
        part[j] = _mm512_dpbf16_ps(part[j], (__m512bh)_mm512_loadu_si512(kj + 32 * c), q[c]);
      }
    }
    const __mmask16 valid = static_cast<__mmask16>((1u << m) - 1u);
    return _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), valid,
                              _mm512_mul_ps(avx512::sum16(part), scale));
  }
};
#endif

// v: float rows [keys, d], or (V = uint32_t, bf16 builds) key pairs [keys / 2, d] from
// pair_rows_bf16, multiplied by P rounded to bf16.
template <int NC, typename Query, typename K, typename V>
void attend_row_avx512(const AttentionRows& a, int64_t r, const Query& query, const K* k,
                       const V* v) {
  constexpr int64_t d = 16 * NC;
  const int64_t n = a.visible[r];
  __m512 acc[NC];
  for (int c = 0; c < NC; ++c) acc[c] = _mm512_loadu_ps(a.acc + r * d + 16 * c);
  float max = a.max[r];
  float sum = a.sum[r];
  [[maybe_unused]] alignas(64) float p[16];
  for (int64_t c0 = 0; c0 < n; c0 += 16) {
    const int64_t m = std::min<int64_t>(16, n - c0);
    const __m512 s = query.score16(k + c0 * d, m);
    const float block_max = _mm512_reduce_max_ps(s);
    if (block_max > max) {
      const float rescale = std::exp(max - block_max);  // 0 on the first keys (max = -inf)
      for (int c = 0; c < NC; ++c) acc[c] = _mm512_mul_ps(acc[c], _mm512_set1_ps(rescale));
      sum *= rescale;
      max = block_max;
    }
    const __m512 e = avx512::exp(_mm512_sub_ps(s, _mm512_set1_ps(max)));
    sum += _mm512_reduce_add_ps(e);
#ifdef __AVX512BF16__
    if constexpr (std::is_same_v<V, uint32_t>) {
      // P rounded to bf16 in key pairs; one dot product per pair and 16 features.
      alignas(32) uint32_t pairs[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(pairs), (__m256i)_mm512_cvtneps_pbh(e));
      const uint32_t* vj = v + (c0 / 2) * d;
      for (int64_t j = 0; j < (m + 1) / 2; ++j) {
        const __m512bh w = (__m512bh)_mm512_set1_epi32(static_cast<int>(pairs[j]));
        for (int c = 0; c < NC; ++c) {
          acc[c] = _mm512_dpbf16_ps(acc[c], (__m512bh)_mm512_loadu_si512(vj + j * d + 16 * c), w);
        }
      }
    } else
#endif
    {
      _mm512_store_ps(p, e);
      for (int64_t j = 0; j < m; ++j) {
        const __m512 w = _mm512_set1_ps(p[j]);
        const float* vj = v + (c0 + j) * d;
        for (int c = 0; c < NC; ++c) {
          acc[c] = _mm512_fmadd_ps(w, _mm512_loadu_ps(vj + 16 * c), acc[c]);
        }
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
    if (a.visible[r] > 0) attend_row_avx512<NC>(a, r, FloatQuery<NC>(a, r), k, v);
  }
}

#ifdef __AVX512BF16__
template <int NC>
void attend_rows_bf16(const AttentionRows& a, const bf16* q, float scale, const bf16* k,
                      const uint32_t* v) {
  for (int64_t r = 0; r < a.rows; ++r) {
    if (a.visible[r] > 0) attend_row_avx512<NC>(a, r, Bf16Query<NC>(q, r, scale), k, v);
  }
}
#endif

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

bool attend_bf16_supported(int64_t head_dim) {
#ifdef __AVX512BF16__
  return head_dim % 32 == 0 && head_dim >= 32 && head_dim <= 128;
#else
  (void)head_dim;
  return false;
#endif
}

void attend_block_bf16(const AttentionRows& rows, const bf16* q_bf16, float scale, const bf16* k,
                       const uint32_t* v) {
#ifdef __AVX512BF16__
  switch (rows.head_dim) {
    case 32:
      return attend_rows_bf16<2>(rows, q_bf16, scale, k, v);
    case 64:
      return attend_rows_bf16<4>(rows, q_bf16, scale, k, v);
    case 96:
      return attend_rows_bf16<6>(rows, q_bf16, scale, k, v);
    case 128:
      return attend_rows_bf16<8>(rows, q_bf16, scale, k, v);
  }
#endif
  (void)rows, (void)q_bf16, (void)scale, (void)k, (void)v;
  throw std::logic_error("attend_block_bf16: head size not supported by this build");
}

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

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
