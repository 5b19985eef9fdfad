#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC bug 105593, see cpu/vec_avx512.h

#include "cpu/lora.h"

#include <algorithm>
#include <string>
#include <vector>

#include "cpu/dispatch.h"
#include "cpu/parallel.h"
#include "cpu/vec_avx512.h"

namespace taco::cpu {
inline namespace TACO_CPU_NS {
namespace {

constexpr int64_t kTile = 8;    // tokens of one slot per task
constexpr int64_t kCols = 512;  // output columns accumulated at once

struct Tile {
  int32_t slot;
  int64_t begin, end;  // into the slot-ordered token list
};

// Tokens with a slot, grouped by slot (stable), cut into tiles of at most kTile.
void group_tokens(const LoraParams& p, std::vector<int32_t>& order, std::vector<Tile>& tiles) {
  std::vector<int64_t> count(p.num_slots + 1, 0);
  for (int64_t t = 0; t < p.tokens; ++t) {
    const int32_t s = p.token_slot[t];
    if (s >= 0) ++count[s + 1];
  }
  for (int64_t s = 0; s < p.num_slots; ++s) count[s + 1] += count[s];
  order.resize(count[p.num_slots]);
  std::vector<int64_t> next(count.begin(), count.end() - 1);
  for (int64_t t = 0; t < p.tokens; ++t) {
    const int32_t s = p.token_slot[t];
    if (s >= 0) order[next[s]++] = static_cast<int32_t>(t);
  }
  for (int64_t s = 0; s < p.num_slots; ++s) {
    for (int64_t b = count[s]; b < count[s + 1]; b += kTile) {
      tiles.push_back({static_cast<int32_t>(s), b, std::min(b + kTile, count[s + 1])});
    }
  }
}

template <typename T>
void widen_row(float* dst, const T* src, int64_t n) {
  int64_t i = 0;
#ifdef __AVX512F__
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, avx512::load16(src + i));
#endif
  for (; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}

#ifdef __AVX512F__
// The first lanes of `mask` of 16 elements widened to float (the others 0).
inline __m512 load16_masked(const float* p, __mmask16 mask) {
  return _mm512_maskz_loadu_ps(mask, p);
}
inline __m512 load16_masked(const bf16* p, __mmask16 mask) {
  const __m256i raw = _mm256_maskz_loadu_epi16(mask, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}
inline __m512 load16_masked(const fp16* p, __mmask16 mask) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, p));
}

// C[R rows, V * 16 columns (the last `tail` lanes)] = X[R, K] W[K, ...]: the products of R
// rows stay in registers over the whole K loop (one W load per vector, one broadcast per row).
template <int R, int V, typename W>
void gemm_block(const float* x, int64_t ldx, int64_t k_len, const W* w, int64_t ldw, float* c,
                int64_t ldc, __mmask16 tail) {
  __m512 acc[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < k_len; ++k) {
    __m512 wv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      wv[v] = v + 1 < V ? avx512::load16(w + k * ldw + 16 * v)
                        : load16_masked(w + k * ldw + 16 * v, tail);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 xb = _mm512_set1_ps(x[r * ldx + k]);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(xb, wv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      _mm512_mask_storeu_ps(c + r * ldc + 16 * v, v + 1 < V ? __mmask16(0xFFFF) : tail, acc[r][v]);
    }
  }
}

template <int R, typename W>
void gemm_rows(const float* x, int64_t ldx, int64_t k_len, const W* w, int64_t ldw, int64_t n_len,
               float* c, int64_t ldc) {
  constexpr int kMaxVecs = R > 4 ? 3 : 4;
  for (int64_t j = 0; j < n_len; j += 16 * kMaxVecs) {
    const int64_t left = std::min<int64_t>(16 * kMaxVecs, n_len - j);
    const int vecs = static_cast<int>((left + 15) / 16);
    const int last = static_cast<int>(left - 16 * (vecs - 1));
    const __mmask16 tail = static_cast<__mmask16>((1u << last) - 1);
    switch (vecs) {
      case 1:
        gemm_block<R, 1>(x, ldx, k_len, w + j, ldw, c + j, ldc, tail);
        break;
      case 2:
        gemm_block<R, 2>(x, ldx, k_len, w + j, ldw, c + j, ldc, tail);
        break;
      case 3:
        gemm_block<R, 3>(x, ldx, k_len, w + j, ldw, c + j, ldc, tail);
        break;
      default:
        if constexpr (kMaxVecs == 4) gemm_block<R, 4>(x, ldx, k_len, w + j, ldw, c + j, ldc, tail);
    }
  }
}
#endif

// C[m, n_len] = X[m, k_len] W[k_len, n_len] (float X and C, W in the adapters' dtype; row
// strides ldx, ldw, ldc), m <= kTile.
template <typename W>
void small_gemm(const float* x, int64_t ldx, int64_t m, int64_t k_len, const W* w, int64_t ldw,
                int64_t n_len, float* c, int64_t ldc) {
#ifdef __AVX512F__
  int64_t r = 0;
  if (m == 8) {
    gemm_rows<8>(x, ldx, k_len, w, ldw, n_len, c, ldc);
    return;
  }
  for (; r + 4 <= m; r += 4) gemm_rows<4>(x + r * ldx, ldx, k_len, w, ldw, n_len, c + r * ldc, ldc);
  switch (m - r) {
    case 3:
      gemm_rows<3>(x + r * ldx, ldx, k_len, w, ldw, n_len, c + r * ldc, ldc);
      break;
    case 2:
      gemm_rows<2>(x + r * ldx, ldx, k_len, w, ldw, n_len, c + r * ldc, ldc);
      break;
    case 1:
      gemm_rows<1>(x + r * ldx, ldx, k_len, w, ldw, n_len, c + r * ldc, ldc);
      break;
    default:
      break;
  }
#else
  for (int64_t i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    for (int64_t j = 0; j < n_len; ++j) row[j] = 0.0f;
    for (int64_t k = 0; k < k_len; ++k) {
      const float xv = x[i * ldx + k];
      const W* wr = w + k * ldw;
      for (int64_t j = 0; j < n_len; ++j) row[j] += xv * static_cast<float>(wr[j]);
    }
  }
#endif
}

// Per-thread working memory.
struct Work {
  std::vector<float> x, s, acc;
};

// One tile: its tokens' x A^T, then y += (x A^T) B^T column chunk by column chunk.
template <typename T, typename W>
void run_tile(const LoraParams& p, const int32_t* tokens, int64_t n, int32_t slot, Work& w) {
  const int64_t sr = p.slices * p.rank;
  w.x.resize(kTile * p.in);
  w.s.resize(kTile * sr);
  w.acc.resize(kTile * kCols);
  for (int64_t k = 0; k < n; ++k) {
    widen_row(w.x.data() + k * p.in, static_cast<const T*>(p.x) + tokens[k] * p.x_stride, p.in);
  }
  small_gemm(w.x.data(), p.in, n, p.in, static_cast<const W*>(p.a) + slot * p.in * sr, sr, sr,
             w.s.data(), sr);
  const W* b = static_cast<const W*>(p.b) + slot * p.rank * p.out;
  for (int64_t c0 = 0; c0 < p.out; c0 += kCols) {
    const int64_t c1 = std::min(p.out, c0 + kCols);
    for (int64_t s = 0; s < p.slices; ++s) {
      const int64_t o0 = std::max<int64_t>(c0, p.slice_start[s]);
      const int64_t o1 = std::min<int64_t>(c1, p.slice_start[s + 1]);
      if (o0 >= o1) continue;
      small_gemm(w.s.data() + s * p.rank, sr, n, p.rank, b + o0, p.out, o1 - o0,
                 w.acc.data() + (o0 - c0), kCols);
    }
    for (int64_t k = 0; k < n; ++k) {
      T* y = static_cast<T*>(p.y) + tokens[k] * p.y_stride;
      const float* acc = w.acc.data() + k * kCols;
      int64_t o = c0;
#ifdef __AVX512F__
      for (; o + 16 <= c1; o += 16) {
        avx512::store16(y + o, _mm512_add_ps(avx512::load16(y + o), _mm512_loadu_ps(acc + o - c0)));
      }
#endif
      for (; o < c1; ++o) y[o] = T(static_cast<float>(y[o]) + acc[o - c0]);
    }
  }
}

}  // namespace

void lora_apply(const LoraParams& p) {
  throw_if(p.check(), "lora_apply");
  if (p.tokens == 0) return;
  for (int64_t t = 0; t < p.tokens; ++t) {
    if (p.token_slot[t] >= p.num_slots) {
      throw_if("LoraParams.token_slot[" + std::to_string(t) +
                   "] = " + std::to_string(p.token_slot[t]) + ": must be < num_slots",
               "lora_apply");
    }
  }
  std::vector<int32_t> order;
  std::vector<Tile> tiles;
  group_tokens(p, order, tiles);
  if (tiles.empty()) return;
  dispatch(p.dtype, [&]<typename T>() {
    dispatch(p.weight_dtype, [&]<typename W>() {
      parallel_for(0, static_cast<int64_t>(tiles.size()), 1, [&](int64_t lo, int64_t hi) {
        thread_local Work w;  // kept across calls: no allocation per projection
        for (int64_t i = lo; i < hi; ++i) {
          const Tile& t = tiles[i];
          run_tile<T, W>(p, order.data() + t.begin, t.end - t.begin, t.slot, w);
        }
      });
    });
  });
}

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
