// Linear layers over FP8 (E4M3) weights on the CPU (params and layout: taco/kernels/fp8.h): the
// weight stays one byte per value in memory, packed once at load in tiles of four rows, and each
// line of codes is widened to float in registers (exactly, through IEEE half), so a decode
// step reads 8 bits per weight instead of 16. Activations stay in the model dtype (W8A16).
#pragma once

#include <cstdint>

#include "cpu/isa.h"
#include "taco/kernels/fp8.h"

namespace taco::cpu {
inline namespace TACO_CPU_NS {

using kernels::Fp8LinearParams;

// codes: W [n, k] E4M3 codes, row-major; packed: fp8_packed_bytes(n, k) bytes. Throws
// std::invalid_argument unless k is a positive multiple of 32.
void pack_fp8_weight(const void* codes, void* packed, int64_t n, int64_t k);

// out [n, k] (bfloat16 when bf16_out, else float32) = code * scale[row] of a packed weight, for
// batches large enough that a dense GEMM over the widened weight beats fp8_linear.
void unpack_fp8_weight(const void* packed, const float* scale, void* out, bool bf16_out, int64_t n,
                       int64_t k);

// out = x W^T. Throws std::invalid_argument naming a bad params field.
void fp8_linear(const Fp8LinearParams& p);

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
