// Linear projections y = x W^T (+ bias), x [T, in], W [out, in] (nn.Linear), and the layouts W is
// kept in. On a CPU with AVX512-BF16 a bf16 weight is packed twice at load time and the plain
// copy dropped:
//   - for at most kSkinnyRows rows (single-stream decode, small batches), cpu::skinny_gemm's
//     layout: the GEMM is bound by reading W, and that layout reads it as one sequential stream
//     per thread;
//   - for more rows (batched decode, prefill), oneDNN's blocked layout
//     (mkldnn::_reorder_linear_weight, the op torch's own CPU freezing uses): at::linear would
//     reorder the plain weight on every call, which at 64 rows costs about as much as the
//     multiply.
// Everything else (float32, float16, CUDA, a CPU without AVX512-BF16) keeps the plain weight
// and runs ATen's GEMM, or on CUDA the CUTLASS GEMM where it applies, else cuBLAS (ops_cuda.h).
// A block-quantized weight (taco/kernels/quant.h) stays quantized on the CPU, packed once by
// cpu::pack_quant_weight, and runs cpu::quant_linear below 32 rows (from there the weight is
// widened to bf16 for the call and oneDNN's GEMM runs). An FP8 (E4M3) weight with per-row scales
// does the same with cpu::fp8_linear. On CUDA a weight of 4-bit blocks (Q4_0, Q4_1, AWQ / GPTQ
// 4-bit) in a bf16 / fp16 model becomes a W4A16 weight (cuda/include/taco/cuda/w4a16.h); other
// quantized weights are dequantized at load into the plain weight.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "taco/kernels/quant.h"

namespace taco::ops {

constexpr int64_t kSkinnyRows = 4;

struct LinearWeight {
  at::Tensor plain;   // [out, in]; undefined when both packed forms exist
  at::Tensor skinny;  // cpu::pack_skinny_weight layout, or undefined
  at::Tensor onednn;  // oneDNN's blocked layout, or undefined
  at::Tensor quant;   // uint8, cpu::pack_quant_weight's layout of quant_type blocks, or undefined
  kernels::QuantType quant_type = kernels::QuantType::kQ8_0;
  at::Tensor in_perm;    // int64 [in]: quant's columns are x's columns in this order, or undefined
  at::Tensor fp8;        // uint8, cpu::pack_fp8_weight's layout of E4M3 codes, or undefined
  at::Tensor fp8_scale;  // float32 [out]: fp8's per-row scales
  // CUDA: a 4-bit weight in the W4A16 layout (taco/kernels/w4a16.h), or undefined.
  at::Tensor w4_codes;  // uint8 [out, in / 2]
  at::Tensor w4_d;      // float16 [out, in / 32]
  at::Tensor w4_m;      // float16 [out, in / 32]
  at::Tensor w4_z;      // uint8 [out, in / 32]
  int64_t out_features = 0;
  int64_t in_features = 0;
};

// Packs w [out, in] where that applies (see above). TACO_GEMM=aten keeps only the plain weight,
// for comparisons.
LinearWeight prepare_linear_weight(const at::Tensor& w);

// A block-quantized weight [n, k] as stored: each row is quant_row_bytes(type, k) bytes of
// `type`'s blocks (taco/kernels/quant.h).
struct QuantizedRows {
  kernels::QuantType type = kernels::QuantType::kQ8_0;
  at::Tensor rows;   // uint8 [n, quant_row_bytes(type, k)], CPU
  int64_t cols = 0;  // k
  // int64 [k] when the stored columns are the weight's in another order (GPTQ act-order:
  // stored column j is column in_perm[j]); undefined when in order.
  at::Tensor in_perm;
};

// Block-quantized parts stacked by rows into one weight [sum(n), in] (q, k, v; gate, up), each
// part in its own type. On the CPU the parts are packed into one layout they all fit
// (quant_common_layout) when every part but the last fills whole row tiles and all share one
// column order. On CUDA, 4-bit parts sharing one column order in a bf16 / fp16 model become a
// W4A16 weight. Otherwise the weight is dequantized to dtype (plain).
LinearWeight prepare_quant_linear_weight(const std::vector<QuantizedRows>& parts, int64_t in,
                                         at::ScalarType dtype, const at::Device& device);

// q's values: float32 [q.rows.size(0), q.cols], columns in the weight's order.
at::Tensor dequantize_rows(const QuantizedRows& q);

// Q4_0 / Q4_1 / Q4_Z rows in the W4A16 layout (taco/kernels/w4a16.h), on the CPU: codes uint8
// [n, k / 2], d and m float16 [n, k / 32], z uint8 [n, k / 32]; columns in the stored order.
std::vector<at::Tensor> w4a16_layout(const QuantizedRows& q);

// An FP8 weight [n, k]: E4M3 codes and a scale per row (a per-tensor scale repeated).
struct Fp8Rows {
  at::Tensor codes;  // uint8 [n, k] (float8_e4m3fn bits), CPU
  at::Tensor scale;  // float32 [n], CPU
};

// FP8 parts stacked by rows into one weight [sum(n), in]. On the CPU with in a multiple of 32
// the codes are packed (cpu::pack_fp8_weight) and the scales concatenated; otherwise, and on
// CUDA, the weight is dequantized to dtype (plain).
LinearWeight prepare_fp8_linear_weight(const std::vector<Fp8Rows>& parts, int64_t in,
                                       at::ScalarType dtype, const at::Device& device);

// f's values: float32 [n, k].
at::Tensor dequantize_fp8(const Fp8Rows& f);

// y [T, out] in x's dtype, or float32 with float_out (logits). bias may be undefined.
at::Tensor linear(const at::Tensor& x, const LinearWeight& w, const at::Tensor& bias,
                  bool float_out = false);

// The same over a plain weight (no packing).
at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                  bool float_out = false);

}  // namespace taco::ops
