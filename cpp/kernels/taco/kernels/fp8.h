// FP8 (OCP E4M3, "float8_e4m3fn") weights: 1 sign bit, 4 exponent bits (bias 7), 3 mantissa
// bits, no infinities, 0x7F / 0xFF NaN; largest finite value 448. A weight W [n, k] is its fp8
// codes times a float32 scale per row (a per-tensor scale is the same scale on every row):
// w[r, c] = e4m3(code[r, c]) * scale[r].
//
// Packed layout (fp8_packed_bytes): W's rows in tiles of kFp8TileRows; tile t holds, for each step
// of 32 columns, the tile's four rows' 32 codes: [ceil(n / 4)][k / 32][4][32] bytes, rows past n
// zero. The scales stay a separate float32 [n] array.
#pragma once

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
