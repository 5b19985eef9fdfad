// SiLU-and-mul: the gated MLP activation of Llama-family models.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "taco/cuda/dtype.h"

namespace taco::cuda {

struct SiluAndMulParams {
  void* out;  // [tokens, inter] contiguous
  const void*
      x;  // [tokens, 2 * inter]: gate in the first half, up in the second; row stride x_stride
  int64_t tokens = 0;
  int64_t inter = 0;
  int64_t x_stride = 0;
  DType dtype = DType::kBFloat16;
};

// out = round(round(silu(gate)) * up): HF applies the activation and the product as two ops in
// the model dtype, and so does the CPU kernel.
cudaError_t silu_and_mul(const SiluAndMulParams& p, cudaStream_t stream);

}  // namespace taco::cuda
