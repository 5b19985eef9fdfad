// Rotary position embedding applied in place to query and key heads.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "taco/cuda/dtype.h"
#include "taco/kernels/rotary.h"

namespace taco::cuda {

using kernels::RotaryParams;

// One block per token; a token whose position is outside [0, max_pos) is left unrotated (the CPU
// backend throws; a device-side check would need a sync).
cudaError_t rotary_embedding(const RotaryParams& p, cudaStream_t stream);

}  // namespace taco::cuda
