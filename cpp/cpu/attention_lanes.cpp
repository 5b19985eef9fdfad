// Layout of the scratch (per thread):
//   qt[i][l]  dword i of query row l (bf16 features 2i, 2i+1), i < head_dim / 2
//   acc[d][l] running sum of p * v for feature d of row l (float)
//   vp[j][d]  dword (v[2j][d], v[2j + 1][d]) for the key pairs of a 16-key chunk (key_pairs.h)
// One 16-key chunk: S_j = sum_i dpbf16(qt[i], bcast(k_j dword i)) for 16 keys, masked past each
// row's position; online softmax lane-wise; acc[d] += sum_j dpbf16(p pair j, bcast(vp[j][d])).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC bug 105593, see cpu/vec_avx512.h
#pragma GCC diagnostic ignored "-Wuninitialized"        // the same, in _mm512_reduce_*_ps

#include "cpu/attention_lanes.h"
#include "cpu/isa.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "cpu/key_pairs.h"
#include "cpu/vec_avx512.h"

namespace taco::cpu {
inline namespace TACO_CPU_NS {

#ifdef __AVX512BF16__
namespace {

constexpr int64_t kChunk = 16;  // keys per softmax update
constexpr int64_t kMaxDim = 128;

struct alignas(64) LaneScratch {
  uint32_t qt[kMaxDim / 2][kLaneRows];
  float acc[kMaxDim][kLaneRows];
  uint32_t vp[kChunk / 2 * kMaxDim];  // [kChunk / 2][D]: pair_rows_bf16
};

inline __m512 bcast_dot(__m512 acc, __m512i lanes, uint32_t pair) {
  const __m512i pairs = _mm512_set1_epi32(static_cast<int>(pair));
  return _mm512_dpbf16_ps(acc, (__m512bh)lanes, (__m512bh)pairs);
}

// Scores of keys [0, m) of the chunk (m <= 16) for the 16 lanes, in s[0..m).
template <int D>
void score_chunk(const LaneScratch& sc, const uint32_t* k, int64_t m, __m512* s) {
  constexpr int P = D / 2;  // dwords per key row
  for (int64_t j0 = 0; j0 < m; j0 += 8) {
    const int64_t n = std::min<int64_t>(8, m - j0);
    __m512 acc[8];
    for (int j = 0; j < 8; ++j) acc[j] = _mm512_setzero_ps();
    if (n == 8) {
      for (int i = 0; i < P; ++i) {
        const __m512i q = _mm512_load_si512(sc.qt[i]);
        for (int j = 0; j < 8; ++j) acc[j] = bcast_dot(acc[j], q, k[(j0 + j) * P + i]);
      }
    } else {
      for (int i = 0; i < P; ++i) {
        const __m512i q = _mm512_load_si512(sc.qt[i]);
        for (int j = 0; j < n; ++j) acc[j] = bcast_dot(acc[j], q, k[(j0 + j) * P + i]);
      }
    }
    for (int j = 0; j < n; ++j) s[j0 + j] = acc[j];
  }
}

template <int D>
void attend(const LaneTile& t, const LaneKeys& kv, LaneScratch& sc) {
  constexpr int P = D / 2;
  // Transposed queries; lanes past rows repeat row 0 (their results are never written).
  for (int64_t l = 0; l < kLaneRows; ++l) {
    const auto* q = reinterpret_cast<const uint32_t*>(t.q[l < t.rows ? l : 0]);
    for (int i = 0; i < P; ++i) sc.qt[i][l] = q[i];
  }
  std::memset(sc.acc, 0, sizeof(float) * D * kLaneRows);
  alignas(64) int32_t pos_arr[kLaneRows];
  int64_t last = 0;
  for (int64_t l = 0; l < kLaneRows; ++l) {
    pos_arr[l] = static_cast<int32_t>(t.pos[l < t.rows ? l : 0]);
    last = std::max<int64_t>(last, pos_arr[l]);
  }
  const __m512i pos = _mm512_load_si512(pos_arr);
  const __m512 scale = _mm512_set1_ps(t.scale);
  const __m512 neg_inf = _mm512_set1_ps(-INFINITY);
  __m512 run_max = neg_inf, run_sum = _mm512_setzero_ps();
  __m512 s[kChunk];
  // Chunks of up to kChunk keys, never across a block edge.
  for (int64_t key0 = 0, m = 0; key0 <= last; key0 += m) {
    const int64_t b = key0 / kv.block_size;
    const int64_t row = key0 % kv.block_size;
    m = std::min<int64_t>({kChunk, last - key0 + 1, kv.block_size - row});
    const int64_t offset = kv.table[b] * kv.block_stride + row * D;
    score_chunk<D>(sc, reinterpret_cast<const uint32_t*>(kv.k + offset), m, s);
    __m512 chunk_max = neg_inf;
    for (int64_t j = 0; j < m; ++j) {
      const __mmask16 seen = _mm512_cmpge_epi32_mask(pos, _mm512_set1_epi32(key0 + j));
      s[j] = _mm512_mask_mul_ps(neg_inf, seen, s[j], scale);
      chunk_max = _mm512_max_ps(chunk_max, s[j]);
    }
    const __m512 new_max = _mm512_max_ps(run_max, chunk_max);
    // Lanes that have seen no key yet keep -inf; subtracting 0 there keeps exp at 0, not NaN.
    const __m512 base = _mm512_mask_mov_ps(
        new_max, _mm512_cmp_ps_mask(new_max, neg_inf, _CMP_EQ_OQ), _mm512_setzero_ps());
    const __m512 alpha = avx512::exp(_mm512_sub_ps(run_max, base));
    run_max = new_max;
    run_sum = _mm512_mul_ps(run_sum, alpha);
    if (_mm512_cmp_ps_mask(alpha, _mm512_set1_ps(1.0f), _CMP_NEQ_UQ) != 0) {
      for (int d = 0; d < D; ++d) {
        _mm512_store_ps(sc.acc[d], _mm512_mul_ps(_mm512_load_ps(sc.acc[d]), alpha));
      }
    }
    __m512i pairs[kChunk / 2];
    for (int64_t j = 0; j < kChunk; j += 2) {
      const __m512 p0 = j < m ? avx512::exp(_mm512_sub_ps(s[j], base)) : _mm512_setzero_ps();
      const __m512 p1 =
          j + 1 < m ? avx512::exp(_mm512_sub_ps(s[j + 1], base)) : _mm512_setzero_ps();
      run_sum = _mm512_add_ps(run_sum, _mm512_add_ps(p0, p1));
      const __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(p0));
      const __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(p1));
      pairs[j / 2] = _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
    }
    pair_rows_bf16(sc.vp, kv.v + offset, m, kChunk / 2, D);
    const int64_t npairs = (m + 1) / 2;
    for (int d0 = 0; d0 < D; d0 += 8) {
      __m512 acc[8];
      for (int x = 0; x < 8; ++x) acc[x] = _mm512_load_ps(sc.acc[d0 + x]);
      for (int64_t j = 0; j < npairs; ++j) {
        for (int x = 0; x < 8; ++x) acc[x] = bcast_dot(acc[x], pairs[j], sc.vp[j * D + d0 + x]);
      }
      for (int x = 0; x < 8; ++x) _mm512_store_ps(sc.acc[d0 + x], acc[x]);
    }
  }
  alignas(64) float inv[kLaneRows];
  _mm512_store_ps(inv, _mm512_div_ps(_mm512_set1_ps(1.0f), run_sum));
  for (int64_t l = 0; l < t.rows; ++l) {
    for (int d = 0; d < D; ++d) t.out[l][d] = bf16(sc.acc[d][l] * inv[l]);
  }
}

}  // namespace

bool attention_lanes_supported(int64_t head_dim, int64_t block_size) {
  return head_dim % 32 == 0 && head_dim >= 32 && head_dim <= kMaxDim && block_size % 2 == 0;
}

void attend_lanes_bf16(const LaneTile& tile, const LaneKeys& keys) {
  thread_local LaneScratch scratch;
  switch (tile.head_dim) {
    case 32:
      return attend<32>(tile, keys, scratch);
    case 64:
      return attend<64>(tile, keys, scratch);
    case 96:
      return attend<96>(tile, keys, scratch);
    case 128:
      return attend<128>(tile, keys, scratch);
  }
  throw std::logic_error("attend_lanes_bf16: head size not supported");
}

#else  // no AVX512-BF16

bool attention_lanes_supported(int64_t, int64_t) { return false; }

void attend_lanes_bf16(const LaneTile&, const LaneKeys&) {
  throw std::logic_error("attend_lanes_bf16: built without AVX512-BF16");
}

#endif

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
