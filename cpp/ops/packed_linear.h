// oneDNN pre-packed weights for the CPU's bf16 GEMMs of more than ops::kSkinnyRows rows (batched
// decode, prefill). at::linear hands oneDNN the plain [out, in] weight, which oneDNN reorders
// into its blocked layout on every call: at 64 rows that reorder costs about as much as the
// multiply. Packing once at load time removes it.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace taco::ops {

// The weight [out, in] in oneDNN's blocked layout for batches near batch_hint rows, or an
// undefined tensor where packing does not apply (not a CPU bf16 tensor, no AVX512-BF16 on this
// CPU, or ATen built without oneDNN). TACO_GEMM=aten turns packing off, for comparisons.
at::Tensor pack_linear_weight(const at::Tensor& weight, int64_t batch_hint);

// x [T, in] (bf16, CPU) times a weight from pack_linear_weight, plus bias when defined: [T, out].
at::Tensor packed_linear(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& bias);

}  // namespace taco::ops
