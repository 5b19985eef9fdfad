// Linear layers over block-quantized weights on the CPU (params and layouts:
// taco/kernels/quant.h): the weight stays quantized in memory, packed once at load in tiles of
// four rows, and each block is widened in registers, so a decode step reads 4.5-8.5 bits per
// weight instead of 16.
#pragma once

#include <cstdint>

#include "cpu/isa.h"
#include "taco/kernels/quant.h"

namespace taco::cpu {
inline namespace TACO_CPU_NS {

using kernels::QuantLinearParams;

// raw: W [n, k] as GGUF stores it (n rows of type t's blocks); packed:
// quant_packed_bytes(layout, n, k) bytes in `layout` (quant_layout(t) or a wider one, see
// taco/kernels/quant.h). Throws std::invalid_argument unless k is a multiple of t's block and t
// fits the layout.
void pack_quant_weight(kernels::QuantType t, kernels::QuantType layout, const void* raw,
                       void* packed, int64_t n, int64_t k);

// out [n, k] = the values of raw (type t's blocks, as for pack_quant_weight), in float32.
void dequantize_quant(kernels::QuantType t, const void* raw, float* out, int64_t n, int64_t k);

// out [n, k] (bfloat16 when bf16_out, else float32) = the values of a packed weight
// (pack_quant_weight's layout): for batches large enough that a dense GEMM over the widened
// weight beats the quantized kernels.
// t: the packed layout.
void unpack_quant_weight(kernels::QuantType t, const void* packed, void* out, bool bf16_out,
                         int64_t n, int64_t k);

// out = x W^T. Throws std::invalid_argument naming a bad params field.
void quant_linear(const QuantLinearParams& p);

// Whether quant_linear rounds x to int8 per block of 32 (scale max|x| / 127, to nearest) for
// weights of type t at this level, as llama.cpp does, to use integer dot products (the
// AVX512-VNNI level); otherwise x stays in float.
bool quant_linear_int8(kernels::QuantType t);

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
