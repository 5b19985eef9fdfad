// Tiles of four W rows are split across the threads in contiguous ranges; each tile is read once
// (four 64-byte lines per step of 32 columns, consecutive in memory) and every x row in turn is
// dotted with it from L1.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC bug 105593, see cpu/vec_avx512.h
#pragma GCC diagnostic ignored "-Wuninitialized"        // the same, in _mm512_reduce_add_ps

#include "cpu/skinny_gemm.h"
#include "cpu/isa.h"

#include "cpu/parallel.h"
#include "cpu/row_tiles.h"

#include <algorithm>
#include <stdexcept>

#ifdef __AVX512BF16__
#include <immintrin.h>
#endif

namespace taco::cpu {
inline namespace TACO_CPU_NS {

constexpr int64_t kStep = 32;  // bf16 columns per 64-byte line

int64_t skinny_packed_elems(int64_t n, int64_t k) {
  return (n + kSkinnyTileRows - 1) / kSkinnyTileRows * kSkinnyTileRows * k;
}

void pack_skinny_weight(const void* weight, void* packed, int64_t n, int64_t k) {
  if (!skinny_gemm_supported(k)) throw std::invalid_argument("pack_skinny_weight: k % 32 != 0");
  pack_row_tiles(weight, packed, n, k, sizeof(bf16), kSkinnyTileRows, kStep);
}

#ifdef __AVX512BF16__
namespace {

constexpr int64_t kMaxMB = 4;        // x rows per pass over a tile: 4 x 4 accumulators in registers
constexpr int64_t kPrefetch = 4096;  // bytes ahead of the step being read

inline void store(const SkinnyGemmParams& p, int64_t row, int64_t col, float v) {
  if (p.out_float) {
    static_cast<float*>(p.out)[row * p.out_stride + col] = v;
  } else {
    static_cast<bf16*>(p.out)[row * p.out_stride + col] = bf16(v);
  }
}

// out[m0 .. m0 + MB, 4t .. 4t + 4) (columns past n are not stored).
template <int MB>
void tile(const SkinnyGemmParams& p, int64_t m0, int64_t t) {
  constexpr int R = kSkinnyTileRows;
  const auto* x = static_cast<const uint16_t*>(p.x) + m0 * p.x_stride;
  const auto* w = static_cast<const uint16_t*>(p.w) + t * R * p.k;
  __m512 acc[R][MB];
  for (int r = 0; r < R; ++r) {
    for (int i = 0; i < MB; ++i) acc[r][i] = _mm512_setzero_ps();
  }
  for (int64_t c = 0; c < p.k; c += kStep) {
    __m512bh xv[MB];
    for (int i = 0; i < MB; ++i) xv[i] = (__m512bh)_mm512_loadu_si512(x + i * p.x_stride + c);
    const uint16_t* lines = w + c * R;
    // Software prefetch 4 KiB ahead: the hardware prefetcher alone leaves the loop waiting on
    // memory. One step reads four 64-byte lines.
    for (int r = 0; r < R; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(lines + r * kStep) + kPrefetch, _MM_HINT_T0);
    }
    for (int r = 0; r < R; ++r) {
      const __m512bh wv = (__m512bh)_mm512_loadu_si512(lines + r * kStep);
      for (int i = 0; i < MB; ++i) acc[r][i] = _mm512_dpbf16_ps(acc[r][i], wv, xv[i]);
    }
  }
  const int64_t cols = std::min<int64_t>(R, p.n - t * R);
  for (int r = 0; r < cols; ++r) {
    for (int i = 0; i < MB; ++i) store(p, m0 + i, t * R + r, _mm512_reduce_add_ps(acc[r][i]));
  }
}

using TileFn = void (*)(const SkinnyGemmParams&, int64_t, int64_t);
constexpr TileFn kByRows[] = {nullptr, tile<1>, tile<2>, tile<3>, tile<4>};

}  // namespace

bool skinny_gemm_supported(int64_t k) { return k > 0 && k % kStep == 0; }

void skinny_gemm_bf16(const SkinnyGemmParams& p) {
  if (!skinny_gemm_supported(p.k)) throw std::invalid_argument("skinny_gemm: k % 32 != 0");
  // Chunks of 16 tiles (64 W rows, 72 KiB at k = 576): large enough to amortize the fork,
  // small enough that two threads split even the 576-row projections.
  const int64_t tiles = (p.n + kSkinnyTileRows - 1) / kSkinnyTileRows;
  parallel_for(0, tiles, 16, [&](int64_t t0, int64_t t1) {
    for (int64_t m0 = 0; m0 < p.m; m0 += kMaxMB) {
      const TileFn fn = kByRows[std::min(kMaxMB, p.m - m0)];
      for (int64_t t = t0; t < t1; ++t) fn(p, m0, t);
    }
  });
}

#else  // no AVX512-BF16: callers use ATen

bool skinny_gemm_supported(int64_t) { return false; }

void skinny_gemm_bf16(const SkinnyGemmParams&) {
  throw std::logic_error("skinny_gemm: built without AVX512-BF16");
}

#endif

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
