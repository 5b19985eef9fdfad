// W is split into tiles of four rows across the threads; each tile's rows are read once (32 bf16
// = one 64-byte line per row and step), and every x row in turn is dotted with them from L1.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC bug 105593, see cpu/vec_avx512.h
#pragma GCC diagnostic ignored "-Wuninitialized"        // the same, in _mm512_reduce_add_ps

#include "cpu/skinny_gemm.h"

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <stdexcept>

#ifdef __AVX512BF16__
#include <immintrin.h>
#endif

namespace taco::cpu {

#ifdef __AVX512BF16__
namespace {

constexpr int64_t kTileRows = 4;  // W rows per tile: 4 x MB accumulators stay in registers
constexpr int64_t kMaxMB = 4;     // x rows per pass over a tile
// W is read at the memory bandwidth only when lines are requested well ahead: the hardware
// prefetcher alone reaches about 17 of 27 GB/s on the 2-core Zen 4 box, this about 21.
constexpr int64_t kPrefetchTiles = 4;

inline void store(const SkinnyGemmParams& p, int64_t row, int64_t col, float v) {
  if (p.out_float) {
    static_cast<float*>(p.out)[row * p.out_stride + col] = v;
  } else {
    static_cast<c10::BFloat16*>(p.out)[row * p.out_stride + col] = c10::BFloat16(v);
  }
}

// out[m0 .. m0 + MB, n0 .. n0 + R) for R <= kTileRows W rows.
template <int MB, int R>
void tile(const SkinnyGemmParams& p, int64_t m0, int64_t n0) {
  const auto* x = static_cast<const uint16_t*>(p.x) + m0 * p.x_stride;
  const auto* w = static_cast<const uint16_t*>(p.w) + n0 * p.k;
  __m512 acc[R][MB];
  for (int r = 0; r < R; ++r) {
    for (int i = 0; i < MB; ++i) acc[r][i] = _mm512_setzero_ps();
  }
  for (int64_t c = 0; c < p.k; c += 32) {
    __m512bh xv[MB];
    for (int i = 0; i < MB; ++i) xv[i] = (__m512bh)_mm512_loadu_si512(x + i * p.x_stride + c);
    for (int r = 0; r < R; ++r) {
      const uint16_t* row = w + r * p.k + c;
      _mm_prefetch(reinterpret_cast<const char*>(row + kPrefetchTiles * kTileRows * p.k),
                   _MM_HINT_T0);  // a hint: past the end of W it is dropped, never faults
      const __m512bh wv = (__m512bh)_mm512_loadu_si512(row);
      for (int i = 0; i < MB; ++i) acc[r][i] = _mm512_dpbf16_ps(acc[r][i], wv, xv[i]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int i = 0; i < MB; ++i) store(p, m0 + i, n0 + r, _mm512_reduce_add_ps(acc[r][i]));
  }
}

template <int MB>
void rows_block(const SkinnyGemmParams& p, int64_t m0, int64_t n0, int64_t n1) {
  int64_t n = n0;
  for (; n + kTileRows <= n1; n += kTileRows) tile<MB, kTileRows>(p, m0, n);
  for (; n < n1; ++n) tile<MB, 1>(p, m0, n);
}

using BlockFn = void (*)(const SkinnyGemmParams&, int64_t, int64_t, int64_t);
constexpr BlockFn kByRows[] = {nullptr, rows_block<1>, rows_block<2>, rows_block<3>,
                               rows_block<4>};

}  // namespace

bool skinny_gemm_supported(int64_t k) { return k > 0 && k % 32 == 0; }

void skinny_gemm_bf16(const SkinnyGemmParams& p) {
  if (!skinny_gemm_supported(p.k)) throw std::invalid_argument("skinny_gemm: k % 32 != 0");
  // Chunks of 16 tiles (64 W rows, 72 KiB at k = 576): large enough to amortize the fork,
  // small enough that two threads split even the 576-row projections.
  const int64_t tiles = (p.n + kTileRows - 1) / kTileRows;
  at::parallel_for(0, tiles, 16, [&](int64_t t0, int64_t t1) {
    const int64_t n0 = t0 * kTileRows, n1 = std::min(p.n, t1 * kTileRows);
    for (int64_t m0 = 0; m0 < p.m; m0 += kMaxMB) {
      kByRows[std::min(kMaxMB, p.m - m0)](p, m0, n0, n1);
    }
  });
}

#else  // no AVX512-BF16: callers use ATen

bool skinny_gemm_supported(int64_t) { return false; }

void skinny_gemm_bf16(const SkinnyGemmParams&) {
  throw std::logic_error("skinny_gemm: built without AVX512-BF16");
}

#endif

}  // namespace taco::cpu
