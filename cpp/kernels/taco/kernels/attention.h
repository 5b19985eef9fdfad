// Paged attention params: one call over a flat batch that mixes prefill chunks and decodes.
//
// KV cache layout and element types: see taco/kernels/kv_cache.h. Query token i of sequence b
// (q_len_b = query_start_loc[b+1] - query_start_loc[b]) sits at position seq_lens[b] - q_len_b + i
// and attends to the cached positions <= its own (causal); only slots below seq_lens[b] are read,
// so unused slots may hold anything. GQA: query head h reads kv head h / (num_heads /
// num_kv_heads).
#pragma once

#include <cstdint>
#include <string>

#include "taco/kernels/check.h"
#include "taco/kernels/dtype.h"
#include "taco/kernels/kv_cache.h"

namespace taco::kernels {

struct PagedAttentionParams {
  void* out = nullptr;                       // [tokens, num_heads, head_dim] dtype contiguous
  const void* query = nullptr;               // [tokens, num_heads, head_dim] dtype, heads
                                             //   contiguous; row stride query_stride elements
  const void* kv = nullptr;                  // [2, num_blocks, num_kv_heads, block_size, head_dim]
  const int32_t* query_start_loc = nullptr;  // [num_seqs + 1] prefix sums of query lengths
  const int32_t* seq_lens = nullptr;     // [num_seqs] context length including this step's tokens
  const int32_t* block_table = nullptr;  // [num_seqs, max_blocks_per_seq]
  float* workspace = nullptr;  // CUDA only: paged_attention_workspace_bytes() bytes of device
                               //   memory, or null when that is 0
  int64_t tokens = 0;          // query_start_loc[num_seqs]
  int64_t num_seqs = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t block_size = 0;
  int64_t num_blocks = 0;
  int64_t max_blocks_per_seq = 0;
  int64_t query_stride = 0;
  int64_t max_query_len = 0;  // host-side bounds that size the CUDA grid (the CPU kernel plans
  int64_t max_seq_len = 0;    //   from query_start_loc)
  float scale = 1.0f;
  DType dtype = DType::kBFloat16;  // query and out; the cache's too unless cache_type says 8-bit
  KvCacheType cache_type = KvCacheType::kModel;  // 8-bit caches: CPU only
  float k_scale = 1.0f;                          // 8-bit caches: K = code value * k_scale
  float v_scale = 1.0f;
  // CUDA tuning knobs for benchmarks and tests; 0 means the library's choice. decode_variant
  // picks a decode-kernel configuration (paged_attention_decode_variant_name), -1 forces the
  // mixed kernel for a decode batch; decode_partition_keys > 0 fixes the keys per split.
  int decode_variant = 0;
  int64_t decode_partition_keys = 0;

  std::string check() const {
    using namespace detail;
    constexpr const char* w = "PagedAttentionParams";
    return first_error(
        require(num_seqs >= 0, w, "num_seqs", num_seqs, "must be >= 0"),
        require(tokens >= 0, w, "tokens", tokens, "must be >= 0"),
        require(num_kv_heads > 0, w, "num_kv_heads", num_kv_heads, "must be > 0"),
        require(num_heads > 0 && num_heads % num_kv_heads == 0, w, "num_heads", num_heads,
                "must be a positive multiple of num_kv_heads"),
        require(head_dim > 0, w, "head_dim", head_dim, "must be > 0"),
        require(block_size > 0, w, "block_size", block_size, "must be > 0"),
        require(num_blocks >= 0, w, "num_blocks", num_blocks, "must be >= 0"),
        require(max_blocks_per_seq >= 0, w, "max_blocks_per_seq", max_blocks_per_seq,
                "must be >= 0"),
        require(query_stride >= num_heads * head_dim, w, "query_stride", query_stride,
                "must be >= num_heads * head_dim"),
        num_seqs > 0 ? require_ptr(query_start_loc, w, "query_start_loc") : std::string(),
        num_seqs > 0 ? require_ptr(seq_lens, w, "seq_lens") : std::string(),
        num_seqs > 0 ? require_ptr(block_table, w, "block_table") : std::string(),
        tokens > 0 ? require_ptr(query, w, "query") : std::string(),
        tokens > 0 ? require_ptr(out, w, "out") : std::string());
  }
};

}  // namespace taco::kernels
