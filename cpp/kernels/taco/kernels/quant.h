// Block-quantized weights (the GGUF block layouts) and the params of a linear layer over them.
//
// A weight W [n, k] is stored row by row, each row as consecutive blocks. 32-value blocks:
//   Q8_0 (34 bytes): fp16 d, int8 q[32];              w[i] = d * q[i]
//   Q4_0 (18 bytes): fp16 d, uint8 qs[16];            w[i] = d * (nibble(i) - 8)
//   Q4_1 (20 bytes): fp16 d, fp16 m, uint8 qs[16];    w[i] = d * nibble(i) + m
//   Q5_0 (22 bytes): fp16 d, uint32 qh, uint8 qs[16];  w[i] = d * (q5(i) - 16)
//   Q5_1 (24 bytes): fp16 d, fp16 m, uint32 qh, qs[16]; w[i] = d * q5(i) + m
// where nibble(i) is the low half of qs[i] for i < 16 and the high half of qs[i - 16] after, and
// q5(i) = nibble(i) + 16 * bit i of qh.
// 256-value super-blocks (llama.cpp's K-quants), of eight sub-blocks of 32:
//   Q4_K (144 bytes): fp16 d, fp16 dmin, 6-bit scale and min per sub-block (12 bytes), 4-bit q;
//                     w = d * scale * q - dmin * min
//   Q5_K (176 bytes): as Q4_K with a fifth bit per value (qh[32]); q in [0, 32)
//   Q6_K (210 bytes): 6-bit q (ql[128] low nibbles, qh[64] two high bits each), int8 scales per
//                     16 values, fp16 d; w = d * scale * (q - 32)
// These are the byte layouts GGUF files (and llama.cpp) use, so a file's tensor data is a
// ready weight. Two more 32-value blocks carry the zero points of group-quantized checkpoints
// (AWQ, GPTQ with zero points), read exactly:
//   Q4_Z (20 bytes): fp16 d, fp16 z (an integer), uint8 qs[16];  w[i] = d * (nibble(i) - z)
//   Q8_Z (36 bytes): fp16 d, fp16 z (an integer), uint8 q[32];   w[i] = d * (q[i] - z)
#pragma once

#include <cstdint>
#include <string>

#include "taco/kernels/check.h"
#include "taco/kernels/dtype.h"

namespace taco::kernels {

enum class QuantType { kQ8_0, kQ4_0, kQ4_1, kQ5_0, kQ5_1, kQ4_K, kQ5_K, kQ6_K, kQ4_Z, kQ8_Z };

constexpr int64_t kQuantBlock = 32;  // values per block of the packed layout, every type

constexpr bool quant_is_k(QuantType t) {
  return t == QuantType::kQ4_K || t == QuantType::kQ5_K || t == QuantType::kQ6_K;
}

// Values per stored block: 32, or 256 for the K-quants.
constexpr int64_t quant_block_values(QuantType t) { return quant_is_k(t) ? 256 : kQuantBlock; }

constexpr int64_t quant_block_bytes(QuantType t) {
  switch (t) {
    case QuantType::kQ8_0:
      return 34;
    case QuantType::kQ4_0:
      return 18;
    case QuantType::kQ4_1:
      return 20;
    case QuantType::kQ5_0:
      return 22;
    case QuantType::kQ5_1:
      return 24;
    case QuantType::kQ4_K:
      return 144;
    case QuantType::kQ5_K:
      return 176;
    case QuantType::kQ6_K:
      return 210;
    case QuantType::kQ4_Z:
      return 20;
    case QuantType::kQ8_Z:
      return 36;
  }
  return 0;
}

// Bytes of one stored row of k values (k a multiple of quant_block_values).
constexpr int64_t quant_row_bytes(QuantType t, int64_t k) {
  return k / quant_block_values(t) * quant_block_bytes(t);
}

constexpr const char* quant_type_name(QuantType t) {
  switch (t) {
    case QuantType::kQ8_0:
      return "Q8_0";
    case QuantType::kQ4_0:
      return "Q4_0";
    case QuantType::kQ4_1:
      return "Q4_1";
    case QuantType::kQ5_0:
      return "Q5_0";
    case QuantType::kQ5_1:
      return "Q5_1";
    case QuantType::kQ4_K:
      return "Q4_K";
    case QuantType::kQ5_K:
      return "Q5_K";
    case QuantType::kQ6_K:
      return "Q6_K";
    case QuantType::kQ4_Z:
      return "Q4_Z";
    case QuantType::kQ8_Z:
      return "Q8_Z";
  }
  return "unknown";
}

// The packed layout the CPU kernels read (cpu::pack_quant_weight makes it once, at load): W's rows
// in tiles of kQuantTileRows; per tile, per block b of 32 columns, the four rows' codes, then
// their fp16 scales d and offsets m, with w = d * code + m. Codes are 4-bit (Q4_0, Q4_1, Q4_K:
// 4 x 16 bytes in GGUF's nibble order) or 8-bit (4 x 32 bytes: Q8_0 as q + 128 with m = -128 d,
// Q5_K as q, Q6_K as q with m = -32 d). Each block has one d and m per row, d[4] then m[4],
// except Q6_K, whose scales change every 16 values: d[8] then m[8], row r's two halves at 2r and
// 2r + 1. A K-quant's d = d * scale and m = -dmin * min are rounded to fp16 at packing (relative
// error at most 2^-11). The zero-point layouts (Q4_Z, Q8_Z) hold z in m's place and the kernels
// take m = -z d, exactly. Rows past n are zero.
constexpr int64_t kQuantTileRows = 4;

constexpr int64_t quant_code_bits(QuantType t) {
  return t == QuantType::kQ4_0 || t == QuantType::kQ4_1 || t == QuantType::kQ4_K ||
                 t == QuantType::kQ4_Z
             ? 4
             : 8;
}

// Whether the packed m slots hold zero points z (m = -z d).
constexpr bool quant_zero_point(QuantType t) {
  return t == QuantType::kQ4_Z || t == QuantType::kQ8_Z;
}

// Scale groups per 32-value block of the packed layout: 2 for Q6_K, else 1.
constexpr int64_t quant_groups(QuantType t) { return t == QuantType::kQ6_K ? 2 : 1; }

// Packed layouts are named by a type that has them: kQ4_0 (4-bit codes), kQ8_0 (8-bit codes),
// kQ6_K (8-bit codes, two scale groups), kQ4_Z and kQ8_Z (zero points). A type packs into its
// own layout or a wider one (4-bit codes widen to 8 bits exactly, one scale serves both groups),
// so parts of a weight stored in different types (llama.cpp's mixed files) can share one packed
// weight; zero-point types share only with zero-point types.
constexpr QuantType quant_layout_of(int64_t bits, int64_t groups, bool zero_point) {
  if (zero_point) return bits == 4 ? QuantType::kQ4_Z : QuantType::kQ8_Z;
  return groups == 2 ? QuantType::kQ6_K : bits == 4 ? QuantType::kQ4_0 : QuantType::kQ8_0;
}
constexpr QuantType quant_layout(QuantType t) {
  return quant_layout_of(quant_code_bits(t), quant_groups(t), quant_zero_point(t));
}
constexpr bool quant_can_share(QuantType a, QuantType b) {
  return quant_zero_point(a) == quant_zero_point(b);
}
// The narrowest layout both fit; only for types that quant_can_share.
constexpr QuantType quant_common_layout(QuantType a, QuantType b) {
  const int64_t bits =
      quant_code_bits(a) > quant_code_bits(b) ? quant_code_bits(a) : quant_code_bits(b);
  const int64_t groups = quant_groups(a) > quant_groups(b) ? quant_groups(a) : quant_groups(b);
  return quant_layout_of(groups == 2 ? 8 : bits, groups, quant_zero_point(a));
}

// Bytes of one tile's block: codes of the four rows, then d and m.
constexpr int64_t quant_tile_block_bytes(QuantType t) {
  return kQuantTileRows * kQuantBlock * quant_code_bits(t) / 8 +
         kQuantTileRows * quant_groups(t) * 2 * 2;
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
