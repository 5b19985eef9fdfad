// Writing new keys/values into the paged KV cache, and copy-on-write block copies inside it.
//
// Cache layout (the same as the CPU backend's, see attention.h): per layer one contiguous tensor
// kv[2, num_blocks, num_kv_heads, block_size, head_dim]; kv[0] holds K, kv[1] holds V. A slot id
// is block * block_size + row.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "taco/cuda/dtype.h"
#include "taco/kernels/kv_cache.h"

namespace taco::cuda {

using kernels::WriteKvParams;

// One block per token. A slot at or beyond num_blocks * block_size is skipped, not written: the
// slots come from the scheduler's block tables, and checking them on the host would cost a sync.
cudaError_t write_kv_cache(const WriteKvParams& p, cudaStream_t stream);

struct CopyBlocksParams {
  void* const* kv_layers;  // [num_layers] device array of per-layer kv base pointers
  const int32_t* pairs;    // [num_pairs, 2] device; (src block, dst block) per row
  int64_t num_layers = 0;
  int64_t num_pairs = 0;
  int64_t num_blocks = 0;
  int64_t block_bytes =
      0;  // bytes of one block of one half: num_kv_heads * block_size * head_dim * elem
};

// dst <- src for both halves (K and V) of every layer, one launch for all layers and pairs.
// A destination must not also be a source in the same call (the copies run concurrently).
cudaError_t copy_blocks(const CopyBlocksParams& p, cudaStream_t stream);

}  // namespace taco::cuda
