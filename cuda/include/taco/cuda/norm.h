// RMSNorm, HF-faithful like the CPU kernels: statistics in float32, the normalized value rounded
// to the model dtype before the weight multiply (transformers' LlamaRMSNorm).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "taco/cuda/dtype.h"

namespace taco::cuda {

struct RmsNormParams {
  void* out;           // [tokens, hidden], row stride out_stride elements
  const void* x;       // [tokens, hidden], row stride x_stride elements
  void* residual;      // fused variant only: [tokens, hidden] contiguous, updated to x + residual
  const void* weight;  // [hidden]
  int64_t tokens = 0;
  int64_t hidden = 0;
  int64_t out_stride = 0;
  int64_t x_stride = 0;
  float eps = 1e-6f;
  DType dtype = DType::kBFloat16;
};

// out = round(round(x / rms(x)) * weight). One block per token.
cudaError_t rms_norm(const RmsNormParams& p, cudaStream_t stream);

// residual = round(residual + x); out = rms_norm(residual) * weight. out may alias x.
cudaError_t fused_add_rms_norm(const RmsNormParams& p, cudaStream_t stream);

}  // namespace taco::cuda
