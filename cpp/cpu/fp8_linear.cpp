// Tiles of four W rows are split across the threads in contiguous ranges; each tile is read once
// (128 bytes per step of 32 columns, consecutive in memory) and every x row in turn is dotted with
// it from L1. A code becomes a float in two steps that are exact for every finite E4M3 value,
// subnormals included: its seven magnitude bits shifted into an IEEE half's exponent and mantissa
// (with the sign moved to the half's sign bit) are the half 2^-8 * value, which the F16C
// conversion widens to float; the 2^8 joins the row's scale on the finished sum. (The NaN codes
// 0x7F / 0xFF read as +-480: weights hold no NaN.) That decode measured faster than a table
// lookup through word permutes, and with a software prefetch a few KiB ahead a step streams its
// weight at memory speed (docs/perf.md).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC bug 105593, see cpu/vec_avx512.h
#pragma GCC diagnostic ignored "-Wuninitialized"        // the same, in _mm512_reduce_add_ps

#include "cpu/fp8_linear.h"

#include <algorithm>
#include <array>
#include <stdexcept>
#include <string>

#include "cpu/fp8_convert.h"
#include "cpu/half.h"
#include "cpu/parallel.h"
#include "cpu/row_tiles.h"

#ifdef __AVX512F__
#include <immintrin.h>

#include "cpu/vec_avx512.h"
#endif

namespace taco::cpu {
inline namespace TACO_CPU_NS {
namespace {

using kernels::DType;
using kernels::kFp8Step;
constexpr int64_t R = kernels::kFp8TileRows;
constexpr int64_t kMaxMB = 4;  // x rows per pass over a tile

// The value of every code (the portable path).
struct Tables {
  std::array<float, 256> value;
  Tables() {
    for (int c = 0; c < 256; ++c) value[c] = kernels::fp8_e4m3_value(static_cast<uint8_t>(c));
  }
};
const Tables& tables() {
  static const Tables t;
  return t;
}

// IEEE half bits that are 2^-8 times the codes' values: magnitude bits at 7..13, sign at 15.
constexpr float kHalfScale = 256.0f;
constexpr int64_t kPrefetch = 4096;  // bytes ahead of the step being read

template <typename T>
T* row_out(const Fp8LinearParams& p, int64_t i) {
  return static_cast<T*>(p.out) + i * p.out_stride;
}

#ifdef __AVX512F__
// 32 codes -> 2^-8 times their values, as two vectors of 16 floats.
inline void decode32(const uint8_t* codes, __m512& lo, __m512& hi) {
  halves_to_float(fp8_half_bits32(fp8_codes32(codes), false), lo, hi);
}

// out[m0 .. m0 + MB, 4t .. 4t + 4) (columns past n not stored). T: x and out's type.
template <int MB, typename T>
void tile(const Fp8LinearParams& p, int64_t m0, int64_t t) {
  const T* x = static_cast<const T*>(p.x) + m0 * p.x_stride;
  const uint8_t* w = static_cast<const uint8_t*>(p.w) + t * R * p.k;
  __m512 acc[R][MB];
  for (int r = 0; r < R; ++r) {
    for (int i = 0; i < MB; ++i) acc[r][i] = _mm512_setzero_ps();
  }
  for (int64_t c = 0; c < p.k; c += kFp8Step) {
    __m512 xlo[MB], xhi[MB];
    for (int i = 0; i < MB; ++i) {
      xlo[i] = avx512::load16(x + i * p.x_stride + c);
      xhi[i] = avx512::load16(x + i * p.x_stride + c + 16);
    }
    const uint8_t* lines = w + c * R;
    _mm_prefetch(reinterpret_cast<const char*>(lines + kPrefetch), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(lines + kPrefetch + 64), _MM_HINT_T0);
    for (int r = 0; r < R; ++r) {
      __m512 wlo, whi;
      decode32(lines + r * kFp8Step, wlo, whi);
      for (int i = 0; i < MB; ++i) {
        acc[r][i] = _mm512_fmadd_ps(whi, xhi[i], _mm512_fmadd_ps(wlo, xlo[i], acc[r][i]));
      }
    }
  }
  const int64_t cols = std::min<int64_t>(R, p.n - t * R);
  for (int r = 0; r < cols; ++r) {
    const float s = p.scale[t * R + r] * kHalfScale;
    for (int i = 0; i < MB; ++i) {
      row_out<T>(p, m0 + i)[t * R + r] = T(_mm512_reduce_add_ps(acc[r][i]) * s);
    }
  }
}
#else
template <int MB, typename T>
void tile(const Fp8LinearParams& p, int64_t m0, int64_t t) {
  const float* value = tables().value.data();
  const T* x = static_cast<const T*>(p.x) + m0 * p.x_stride;
  const uint8_t* w = static_cast<const uint8_t*>(p.w) + t * R * p.k;
  float acc[R][MB] = {};
  for (int64_t c = 0; c < p.k; c += kFp8Step) {
    const uint8_t* lines = w + c * R;
    for (int r = 0; r < R; ++r) {
      float wv[kFp8Step];
      for (int j = 0; j < kFp8Step; ++j) wv[j] = value[lines[r * kFp8Step + j]];
      for (int i = 0; i < MB; ++i) {
        const T* xi = x + i * p.x_stride + c;
        float s = 0;
        for (int j = 0; j < kFp8Step; ++j) s += wv[j] * static_cast<float>(xi[j]);
        acc[r][i] += s;
      }
    }
  }
  const int64_t cols = std::min<int64_t>(R, p.n - t * R);
  for (int r = 0; r < cols; ++r) {
    for (int i = 0; i < MB; ++i) {
      row_out<T>(p, m0 + i)[t * R + r] = T(acc[r][i] * p.scale[t * R + r]);
    }
  }
}
#endif

template <typename T>
void run(const Fp8LinearParams& p) {
  using TileFn = void (*)(const Fp8LinearParams&, int64_t, int64_t);
  constexpr TileFn by_rows[] = {nullptr, tile<1, T>, tile<2, T>, tile<3, T>, tile<4, T>};
  const int64_t tiles = (p.n + R - 1) / R;
  // Chunks of 16 tiles (64 rows), as the skinny bf16 GEMM.
  parallel_for(0, tiles, 16, [&](int64_t t0, int64_t t1) {
    for (int64_t m0 = 0; m0 < p.m; m0 += kMaxMB) {
      const TileFn fn = by_rows[std::min(kMaxMB, p.m - m0)];
      for (int64_t t = t0; t < t1; ++t) fn(p, m0, t);
    }
  });
}

void check_k(const char* where, int64_t n, int64_t k) {
  if (n <= 0 || k <= 0 || k % kFp8Step != 0) {
    throw std::invalid_argument(std::string(where) + ": need n > 0 and k a positive multiple of " +
                                "32, got n = " + std::to_string(n) + ", k = " + std::to_string(k));
  }
}

template <typename T>
void unpack(const uint8_t* packed, const float* scale, T* out, int64_t n, int64_t k) {
  parallel_for(0, (n + R - 1) / R, 4, [&](int64_t t0, int64_t t1) {
#ifndef __AVX512F__
    const float* value = tables().value.data();
#endif
    for (int64_t t = t0; t < t1; ++t) {
      for (int64_t r = 0; r < R && t * R + r < n; ++r) {
        T* dst = out + (t * R + r) * k;
        for (int64_t c = 0; c < k; c += kFp8Step) {
          const uint8_t* codes = packed + t * R * k + c * R + r * kFp8Step;
#ifdef __AVX512F__
          __m512 lo, hi;
          decode32(codes, lo, hi);
          const __m512 s = _mm512_set1_ps(scale[t * R + r] * kHalfScale);
          avx512::store16(dst + c, _mm512_mul_ps(lo, s));
          avx512::store16(dst + c + 16, _mm512_mul_ps(hi, s));
#else
          for (int64_t j = 0; j < kFp8Step; ++j) dst[c + j] = T(value[codes[j]] * scale[t * R + r]);
#endif
        }
      }
    }
  });
}

}  // namespace

void pack_fp8_weight(const void* codes, void* packed, int64_t n, int64_t k) {
  check_k("pack_fp8_weight", n, k);
  pack_row_tiles(codes, packed, n, k, 1, R, kFp8Step);
}

void unpack_fp8_weight(const void* packed, const float* scale, void* out, bool bf16_out, int64_t n,
                       int64_t k) {
  check_k("unpack_fp8_weight", n, k);
  const auto* p = static_cast<const uint8_t*>(packed);
  if (bf16_out) {
    unpack(p, scale, static_cast<bf16*>(out), n, k);
  } else {
    unpack(p, scale, static_cast<float*>(out), n, k);
  }
}

void fp8_linear(const Fp8LinearParams& p) {
  const std::string err = p.check();
  if (!err.empty()) throw std::invalid_argument(err);
  if (p.m == 0) return;
  if (p.dtype == DType::kBFloat16) {
    run<bf16>(p);
  } else {
    run<float>(p);
  }
}

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
