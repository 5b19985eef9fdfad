// Block-quantized weights (the GGUF block layouts) and the params of a linear layer over them.
//
// A weight W [n, k] is stored row by row, each row as k / 32 consecutive blocks of 32 values:
//   Q8_0 (34 bytes): fp16 d, int8 q[32];              w[i] = d * q[i]
//   Q4_0 (18 bytes): fp16 d, uint8 qs[16];            w[i] = d * (nibble(i) - 8)
//   Q4_1 (20 bytes): fp16 d, fp16 m, uint8 qs[16];    w[i] = d * nibble(i) + m
// where nibble(i) is the low half of qs[i] for i < 16 and the high half of qs[i - 16] after.
// These are the byte layouts GGUF files (and llama.cpp) use, so a file's tensor data is a
// ready weight.
#pragma once

#include <cstdint>
#include <string>

#include "taco/kernels/check.h"
#include "taco/kernels/dtype.h"

namespace taco::kernels {

enum class QuantType { kQ8_0, kQ4_0, kQ4_1 };

constexpr int64_t kQuantBlock = 32;  // values per block, every type

constexpr int64_t quant_block_bytes(QuantType t) {
  switch (t) {
    case QuantType::kQ8_0:
      return 34;
    case QuantType::kQ4_0:
      return 18;
    case QuantType::kQ4_1:
      return 20;
  }
  return 0;
}

constexpr const char* quant_type_name(QuantType t) {
  switch (t) {
    case QuantType::kQ8_0:
      return "Q8_0";
    case QuantType::kQ4_0:
      return "Q4_0";
    case QuantType::kQ4_1:
      return "Q4_1";
  }
  return "unknown";
}

// The packed layout the CPU kernels read (cpu::pack_quant_weight makes it once, at load): W's rows
// in tiles of kQuantTileRows; per tile, per block b of 32 columns, the four rows' codes, then
// their fp16 scales d[4] and offsets m[4], with w = d * code + m. 4-bit types keep GGUF's nibble
// order (4 x 16 bytes; Q4_0: m = -8 d); Q8_0 stores code = q + 128 (4 x 32 bytes; m = -128 d).
// Rows past n are zero.
constexpr int64_t kQuantTileRows = 4;

constexpr int64_t quant_code_bits(QuantType t) { return t == QuantType::kQ8_0 ? 8 : 4; }

// Bytes of one tile's block: codes of the four rows, then d[4] and m[4].
constexpr int64_t quant_tile_block_bytes(QuantType t) {
  return kQuantTileRows * kQuantBlock * quant_code_bits(t) / 8 + kQuantTileRows * 2 * 2;
}

constexpr int64_t quant_packed_bytes(QuantType t, int64_t n, int64_t k) {
  return (n + kQuantTileRows - 1) / kQuantTileRows * (k / kQuantBlock) * quant_tile_block_bytes(t);
}

// out [m, n] = x [m, k] W^T, W block-quantized and packed as above. x and out in dtype (float32
// or bfloat16), accumulation in float32.
struct QuantLinearParams {
  void* out = nullptr;      // [m, n] dtype, row stride out_stride elements
  const void* x = nullptr;  // [m, k] dtype, row stride x_stride elements
  const void* w = nullptr;  // the packed layout, quant_packed_bytes(wtype, n, k) bytes
  int64_t m = 0;
  int64_t n = 0;
  int64_t k = 0;  // a multiple of 32
  int64_t x_stride = 0;
  int64_t out_stride = 0;
  QuantType wtype = QuantType::kQ4_1;
  DType dtype = DType::kFloat32;

  std::string check() const {
    using namespace detail;
    constexpr const char* s = "QuantLinearParams";
    return first_error(
        require(m >= 0, s, "m", m, "must be >= 0"), require(n > 0, s, "n", n, "must be > 0"),
        require(k > 0 && k % kQuantBlock == 0, s, "k", k, "must be a positive multiple of 32"),
        require(x_stride >= k, s, "x_stride", x_stride, "must be >= k"),
        require(out_stride >= n, s, "out_stride", out_stride, "must be >= n"),
        require(dtype != DType::kFloat16, s, "dtype", static_cast<int64_t>(dtype),
                "must be float32 or bfloat16"),
        require_ptr(w, s, "w"), m > 0 ? require_ptr(x, s, "x") : std::string(),
        m > 0 ? require_ptr(out, s, "out") : std::string());
  }
};

}  // namespace taco::kernels
