// 4-bit weights on the GPU (W4A16): W [n, k] as 4-bit codes with, per 32-column block of a row,
// an fp16 scale d, an fp16 offset m and an integer zero point z: w = d * (q - z) + m. Every 4-bit
// block type of quant.h maps onto it exactly: Q4_0 (z = 8, m = 0), Q4_1 (z = 0, its m), Q4_Z
// (AWQ / GPTQ zero points: its z, m = 0).
//
// Layout: codes uint8 [n, k / 2], byte j of a row holding column 2j in its low nibble and 2j + 1
// in its high; d and m fp16 [n, k / 32]; z uint8 [n, k / 32].
#pragma once

#include <cstdint>
#include <string>

#include "taco/kernels/check.h"
#include "taco/kernels/dtype.h"

namespace taco::kernels {

constexpr int64_t kW4Block = 32;

// out [m, n] = x [m, k] W^T; x and out in dtype (bfloat16 or float16), sums in float32.
struct W4A16Params {
  void* out = nullptr;      // [m, n] dtype, row stride out_stride elements
  const void* x = nullptr;  // [m, k] dtype, row stride x_stride elements
  const uint8_t* codes = nullptr;
  const uint16_t* d = nullptr;  // fp16 bits
  const uint16_t* mofs = nullptr;
  const uint8_t* z = nullptr;
  int64_t m = 0;
  int64_t n = 0;
  int64_t k = 0;  // a multiple of 32
  int64_t x_stride = 0;
  int64_t out_stride = 0;
  DType dtype = DType::kBFloat16;

  std::string check() const {
    using namespace detail;
    constexpr const char* s = "W4A16Params";
    return first_error(
        require(m >= 0, s, "m", m, "must be >= 0"), require(n > 0, s, "n", n, "must be > 0"),
        require(k > 0 && k % kW4Block == 0, s, "k", k, "must be a positive multiple of 32"),
        require(x_stride >= k && x_stride % 8 == 0, s, "x_stride", x_stride,
                "must be >= k and a multiple of 8"),
        require(out_stride >= n, s, "out_stride", out_stride, "must be >= n"),
        require(dtype != DType::kFloat32, s, "dtype", static_cast<int64_t>(dtype),
                "must be bfloat16 or float16"),
        require_ptr(codes, s, "codes"), require_ptr(d, s, "d"), require_ptr(mofs, s, "mofs"),
        require_ptr(z, s, "z"), m > 0 ? require_ptr(x, s, "x") : std::string(),
        m > 0 ? require_ptr(out, s, "out") : std::string());
  }
};

}  // namespace taco::kernels
