// 8-bit floats: E4M3 ("float8_e4m3fn": 1 sign bit, 4 exponent bits with bias 7, 3 mantissa bits,
// no infinities, 0x7F / 0xFF NaN, largest finite value 448) for weights and KV caches, and E5M2
// (the top byte of an IEEE half) for KV caches.
//
// FP8 weights: a weight W [n, k] is its E4M3 codes times a float32 scale per row (a per-tensor
// scale is the same scale on every row): w[r, c] = e4m3(code[r, c]) * scale[r]. Packed layout
// (fp8_packed_bytes): W's rows in tiles of kFp8TileRows; tile t holds, for each step of 32
// columns, the tile's four rows' 32 codes: [ceil(n / 4)][k / 32][4][32] bytes, rows past n zero.
// The scales stay a separate float32 [n] array.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "taco/kernels/check.h"
#include "taco/kernels/dtype.h"

namespace taco::kernels {

constexpr int64_t kFp8TileRows = 4;
constexpr int64_t kFp8Step = 32;
constexpr float kFp8E4M3Max = 448.0f;

// The value of an e4m3 code (NaN for 0x7F and 0xFF).
inline float fp8_e4m3_value(uint8_t code) {
  const int e = (code >> 3) & 15, m = code & 7;
  float v;
  if (e == 15 && m == 7) {
    const uint32_t nan = 0x7FC00000u;
    std::memcpy(&v, &nan, 4);
    return v;
  }
  if (e == 0) {
    v = static_cast<float>(m) * (1.0f / 512.0f);  // subnormal: m / 8 * 2^-6
  } else {
    v = static_cast<float>(8 + m) * (1.0f / 8.0f);
    for (int i = 7; i < e; ++i) v *= 2.0f;
    for (int i = e; i < 7; ++i) v *= 0.5f;
  }
  return (code & 0x80) ? -v : v;
}

// The value of an E5M2 code (1 sign, 5 exponent bits with bias 15, 2 mantissa bits: the top byte
// of an IEEE half, with its infinities and NaNs).
inline float fp8_e5m2_value(uint8_t code) {
  const int e = (code >> 2) & 31, m = code & 3;
  float v;
  if (e == 31) {
    const uint32_t bits = m == 0 ? 0x7F800000u : 0x7FC00000u;
    std::memcpy(&v, &bits, 4);
  } else if (e == 0) {
    v = static_cast<float>(m) * (1.0f / 65536.0f);  // subnormal: m / 4 * 2^-14
  } else {
    v = static_cast<float>(4 + m) * (1.0f / 4.0f);
    for (int i = 15; i < e; ++i) v *= 2.0f;
    for (int i = e; i < 15; ++i) v *= 0.5f;
  }
  return (code & 0x80) ? -v : v;
}

// f rounded to nearest even into an 8-bit float of `mbits` mantissa bits and exponent bias
// `bias`, saturating at +-max (the largest finite value; NaN becomes nan_code).
inline uint8_t float_to_fp8(float f, int mbits, int bias, float max, uint8_t nan_code) {
  if (f != f) return nan_code;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0;
  float a = std::fabs(f);
  if (a > max) a = max;
  const int min_exp = 1 - bias;  // exponent of the smallest normal
  int e;
  std::frexp(a, &e);  // a = f * 2^e, f in [0.5, 1)
  e -= 1;             // a = 1.x * 2^e
  if (a == 0.0f || e < min_exp) {
    // Subnormal: multiples of 2^(min_exp - mbits); a count of 2^mbits is the smallest normal.
    const int q = static_cast<int>(std::nearbyint(std::ldexp(a, mbits - min_exp)));
    return static_cast<uint8_t>(sign | q);
  }
  int q = static_cast<int>(std::nearbyint(std::ldexp(a, mbits - e))) - (1 << mbits);
  if (q == (1 << mbits)) {
    q = 0;
    e += 1;
  }
  return static_cast<uint8_t>(sign | ((e + bias) << mbits) | q);
}

inline uint8_t fp8_e4m3_from_float(float f) { return float_to_fp8(f, 3, 7, kFp8E4M3Max, 0x7F); }
constexpr float kFp8E5M2Max = 57344.0f;
inline uint8_t fp8_e5m2_from_float(float f) { return float_to_fp8(f, 2, 15, kFp8E5M2Max, 0x7E); }

constexpr int64_t fp8_packed_bytes(int64_t n, int64_t k) {
  return (n + kFp8TileRows - 1) / kFp8TileRows * kFp8TileRows * k;
}

// out [m, n] = (x [m, k] W^T) with W = codes * scale per row. x and out in dtype (float32 or
// bfloat16), products and sums in float32.
struct Fp8LinearParams {
  void* out = nullptr;           // [m, n] dtype, row stride out_stride elements
  const void* x = nullptr;       // [m, k] dtype, row stride x_stride elements
  const void* w = nullptr;       // the packed codes, fp8_packed_bytes(n, k) bytes
  const float* scale = nullptr;  // [n]
  int64_t m = 0;
  int64_t n = 0;
  int64_t k = 0;  // a multiple of 32
  int64_t x_stride = 0;
  int64_t out_stride = 0;
  DType dtype = DType::kFloat32;

  std::string check() const {
    using namespace detail;
    constexpr const char* s = "Fp8LinearParams";
    return first_error(
        require(m >= 0, s, "m", m, "must be >= 0"), require(n > 0, s, "n", n, "must be > 0"),
        require(k > 0 && k % kFp8Step == 0, s, "k", k, "must be a positive multiple of 32"),
        require(x_stride >= k, s, "x_stride", x_stride, "must be >= k"),
        require(out_stride >= n, s, "out_stride", out_stride, "must be >= n"),
        require(dtype != DType::kFloat16, s, "dtype", static_cast<int64_t>(dtype),
                "must be float32 or bfloat16"),
        require_ptr(w, s, "w"), require_ptr(scale, s, "scale"),
        m > 0 ? require_ptr(x, s, "x") : std::string(),
        m > 0 ? require_ptr(out, s, "out") : std::string());
  }
};

}  // namespace taco::kernels
