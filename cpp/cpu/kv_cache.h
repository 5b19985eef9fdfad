// Writing new keys/values into the paged KV cache.
// Cache layout (ops/ops.h): kv[2, num_blocks, num_kv_heads, block_size, head_dim].
#pragma once

#include <cstdint>

namespace taco::cpu {

struct WriteKvParams {
  const void* key;             // [tokens, num_kv_heads, head_dim], row stride key_stride
  const void* value;           // [tokens, num_kv_heads, head_dim], row stride value_stride
  void* kv;                    // [2, num_blocks, num_kv_heads, block_size, head_dim] contiguous
  const int64_t* slot_mapping; // [tokens]; slot = block * block_size + row, negative: skip
  int64_t tokens = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t block_size = 0;
  int64_t num_blocks = 0;
  int64_t key_stride = 0;
  int64_t value_stride = 0;
};

// Throws std::out_of_range for a slot beyond the cache.
template <typename T>
void write_kv_cache(const WriteKvParams& p);

}  // namespace taco::cpu
