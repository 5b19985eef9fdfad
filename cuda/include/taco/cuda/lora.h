// LoRA's grouped shrink / expand: y[t] += (x[t] A_slot^T) B_slot^T for every token with an
// adapter slot, many adapters in one launch pair (punica's BGMV shape).
#pragma once

#include <cuda_runtime_api.h>

#include "taco/cuda/dtype.h"
#include "taco/kernels/lora.h"

namespace taco::cuda {

using kernels::LoraParams;

// Two kernels on `stream`: shrink (one warp per token and A row, into p.scratch) then expand
// (one thread per token and output column, accumulating in float32 and rounding once into y).
// Tokens without a slot are skipped. Returns cudaErrorInvalidValue when p.check() fails.
cudaError_t lora_apply(const LoraParams& p, cudaStream_t stream);

}  // namespace taco::cuda
