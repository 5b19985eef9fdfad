// RMSNorm, HF-faithful like the CPU kernels: statistics in float32, the normalized value rounded
// to the model dtype before the weight multiply (transformers' LlamaRMSNorm).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "taco/cuda/dtype.h"
#include "taco/kernels/norm.h"

namespace taco::cuda {

using kernels::RmsNormParams;

// out = round(round(x / rms(x)) * weight). One block per token.
cudaError_t rms_norm(const RmsNormParams& p, cudaStream_t stream);

// residual = round(residual + x); out = rms_norm(residual) * weight. out may alias x.
cudaError_t fused_add_rms_norm(const RmsNormParams& p, cudaStream_t stream);

}  // namespace taco::cuda
