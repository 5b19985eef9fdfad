// Paged KV cache layout and the params of writing new keys/values into it.
//
// Per layer one contiguous tensor kv[2, num_blocks, num_kv_heads, block_size, head_dim]; kv[0]
// holds K, kv[1] holds V. The token at position p of a sequence lives in block
// block_table[p / block_size], row p % block_size; a slot id is block * block_size + row. The
// CPU and CUDA backends use the same layout.
//
// The cache holds the model dtype, or (CPU) 8-bit floats: an element is stored as
// fp8(x / scale) (round to nearest even, saturating at the format's largest value) and read as
// value * scale, with one scale for K and one for V per layer (1 unless the checkpoint gives
// them).
#pragma once

#include <cstdint>
#include <string>

#include "taco/kernels/check.h"
#include "taco/kernels/dtype.h"

namespace taco::kernels {

enum class KvCacheType : uint8_t { kModel, kFp8E4M3, kFp8E5M2 };

constexpr int64_t kv_cache_elem_bytes(KvCacheType t, DType model) {
  return t == KvCacheType::kModel ? dtype_size(model) : 1;
}

struct WriteKvParams {
  const void* key = nullptr;    // [tokens, num_kv_heads, head_dim] dtype, row stride key_stride
  const void* value = nullptr;  // [tokens, num_kv_heads, head_dim] dtype, row stride value_stride
  void* kv = nullptr;           // [2, num_blocks, num_kv_heads, block_size, head_dim] contiguous
  const int64_t* slot_mapping = nullptr;  // [tokens] int64; negative: skip the token (padding)
  int64_t tokens = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t block_size = 0;
  int64_t num_blocks = 0;
  int64_t key_stride = 0;  // elements between tokens, >= num_kv_heads * head_dim
  int64_t value_stride = 0;
  DType dtype = DType::kBFloat16;  // key and value; the cache's too unless cache_type says 8-bit
  KvCacheType cache_type = KvCacheType::kModel;
  float k_scale = 1.0f;
  float v_scale = 1.0f;

  std::string check() const {
    using namespace detail;
    constexpr const char* w = "WriteKvParams";
    const int64_t row = num_kv_heads * head_dim;
    return first_error(require(tokens >= 0, w, "tokens", tokens, "must be >= 0"),
                       require(num_kv_heads > 0, w, "num_kv_heads", num_kv_heads, "must be > 0"),
                       require(head_dim > 0, w, "head_dim", head_dim, "must be > 0"),
                       require(block_size > 0, w, "block_size", block_size, "must be > 0"),
                       require(num_blocks >= 0, w, "num_blocks", num_blocks, "must be >= 0"),
                       require(key_stride >= row, w, "key_stride", key_stride,
                               "must be >= num_kv_heads * head_dim"),
                       require(value_stride >= row, w, "value_stride", value_stride,
                               "must be >= num_kv_heads * head_dim"),
                       tokens > 0 ? require_ptr(key, w, "key") : std::string(),
                       tokens > 0 ? require_ptr(value, w, "value") : std::string(),
                       tokens > 0 ? require_ptr(slot_mapping, w, "slot_mapping") : std::string(),
                       tokens > 0 && num_blocks > 0 ? require_ptr(kv, w, "kv") : std::string());
  }
};

}  // namespace taco::kernels
