// SiLU-and-mul: the gated MLP activation of Llama-family models.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "taco/cuda/dtype.h"
#include "taco/kernels/activation.h"

namespace taco::cuda {

using kernels::SiluAndMulParams;

// out = round(round(silu(gate)) * up): HF applies the activation and the product as two ops in
// the model dtype, and so does the CPU kernel.
cudaError_t silu_and_mul(const SiluAndMulParams& p, cudaStream_t stream);

}  // namespace taco::cuda
