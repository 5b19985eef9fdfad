// W4A16 linears (layout and params: taco/kernels/w4a16.h): the 4-bit weight stays 4-bit in device
// memory. Skinny batches (decodes) run a GEMV-style kernel that widens the codes in registers;
// larger batches widen the weight into a dense buffer for the dense GEMM.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "taco/cuda/dtype.h"
#include "taco/kernels/w4a16.h"

namespace taco::cuda {

using kernels::W4A16Params;

// The most x rows w4a16_gemv takes.
constexpr int64_t kW4GemvMaxRows = 8;

// out = x W^T for p.m <= kW4GemvMaxRows rows. x must be 16-byte aligned (x_stride a multiple of
// 8). cudaErrorInvalidValue for bad params.
cudaError_t w4a16_gemv(const W4A16Params& p, cudaStream_t stream);

// dense [n, k] (p.dtype, contiguous) = the weight's values. Uses the weight fields, n, k, dtype.
cudaError_t w4a16_dequantize(const W4A16Params& p, void* dense, cudaStream_t stream);

}  // namespace taco::cuda
