// Rotary position embedding applied in place to query and key heads.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "taco/cuda/dtype.h"

namespace taco::cuda {

struct RotaryParams {
  const int64_t* positions;  // [tokens] device
  void* query;               // [tokens, num_heads * head_dim], row stride query_stride elements
  void* key;                 // [tokens, num_kv_heads * head_dim], row stride key_stride elements
  const float* cos_sin;      // [max_pos, rot_dim] float32: cos in columns [0, rot_dim/2), sin after
  int64_t tokens = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t rot_dim = 0;  // rotated leading features of each head (even, <= head_dim)
  int64_t query_stride = 0;
  int64_t key_stride = 0;
  int64_t max_pos = 0;
  bool is_neox = true;  // neox: pairs (i, i + rot_dim/2); GPT-J: pairs (2i, 2i+1)
  DType dtype = DType::kBFloat16;
};

// One block per token; a token whose position is outside [0, max_pos) is left unrotated (the CPU
// backend throws; a device-side check would need a sync).
cudaError_t rotary_embedding(const RotaryParams& p, cudaStream_t stream);

}  // namespace taco::cuda
