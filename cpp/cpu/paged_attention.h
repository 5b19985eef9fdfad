// Paged attention over a flat batch that mixes prefill chunks and decodes.
// Cache layout (ops/ops.h): kv[2, num_blocks, num_kv_heads, block_size, head_dim].
#pragma once

#include <cstdint>

namespace taco::cpu {

struct PagedAttentionParams {
  void* out;                        // [tokens, num_heads, head_dim] contiguous
  const void* query;                // [tokens, num_heads, head_dim], row stride query_stride
  const void* kv;                   // [2, num_blocks, num_kv_heads, block_size, head_dim]
  const int32_t* query_start_loc;   // [num_seqs + 1] prefix sums of query lengths
  const int32_t* seq_lens;          // [num_seqs] context length including this step's tokens
  const int32_t* block_table;       // [num_seqs, max_blocks_per_seq]
  int64_t num_seqs = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t block_size = 0;
  int64_t num_blocks = 0;
  int64_t max_blocks_per_seq = 0;
  int64_t query_stride = 0;
  float scale = 1.0f;
};

// Query token i of sequence b sits at position seq_lens[b] - q_len + i and attends to cached
// positions <= its own. Only slots below seq_lens[b] are read, so unused slots may hold anything.
template <typename T>
void paged_attention(const PagedAttentionParams& p);

}  // namespace taco::cpu
