// How a paged-attention call is cut into CTAs and key splits (attention.h describes the scheme).
// Shared by the attention kernel, its workspace query and the split reduction so all three agree.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "common.cuh"
#include "taco/cuda/attention.h"

namespace taco::cuda {

constexpr int kAttnWarps = 4;
constexpr int kAttnRows = 16;  // query rows (token, head) per CTA
constexpr int kAttnRowsPerWarp = kAttnRows / kAttnWarps;
constexpr int kAttnChunk = 32;          // keys staged in shared memory at a time
constexpr int kMinPartitionKeys = 512;  // fewest keys worth a split of their own
constexpr int kMaxSplits = 32;
constexpr int kTargetCtasPerSm = 8;  // split until the grid holds this many per SM

struct AttentionPlan {
  int heads_per_cta = 1;   // GQA heads of one kv head that share a CTA (<= kAttnRows)
  int tile_tokens = 1;     // query tokens per CTA: kAttnRows / heads_per_cta
  int q_tiles = 1;         // CTAs per sequence along its query tokens (from max_query_len)
  int head_chunks = 1;     // CTAs per kv head along its GQA group
  int num_splits = 1;      // key partitions (grid z); > 1 needs the workspace and the reduction
  int partition_keys = 0;  // keys per split, a multiple of kAttnChunk
};

inline AttentionPlan make_attention_plan(const PagedAttentionParams& p, int num_sms) {
  AttentionPlan plan;
  const int64_t group = p.num_heads / p.num_kv_heads;
  plan.heads_per_cta = static_cast<int>(std::min<int64_t>(group, kAttnRows));
  plan.tile_tokens = kAttnRows / plan.heads_per_cta;
  plan.head_chunks = static_cast<int>(ceil_div(group, plan.heads_per_cta));
  plan.q_tiles =
      static_cast<int>(ceil_div(std::max<int64_t>(p.max_query_len, 1), plan.tile_tokens));
  const int64_t ctas = p.num_seqs * plan.q_tiles * p.num_kv_heads * plan.head_chunks;
  const int64_t max_splits =
      std::min<int64_t>(kMaxSplits, std::max<int64_t>(1, p.max_seq_len / kMinPartitionKeys));
  const int64_t wanted =
      ceil_div(static_cast<int64_t>(kTargetCtasPerSm) * num_sms, std::max<int64_t>(ctas, 1));
  plan.num_splits = static_cast<int>(std::clamp<int64_t>(wanted, 1, max_splits));
  const int64_t keys = ceil_div(std::max<int64_t>(p.max_seq_len, 1), plan.num_splits);
  plan.partition_keys = static_cast<int>(ceil_div(keys, kAttnChunk) * kAttnChunk);
  return plan;
}

// Workspace of a split call, float32: acc [splits, tokens, heads, head_dim], then max and sum,
// each [splits, tokens, heads].
inline size_t attention_workspace_floats(const PagedAttentionParams& p, const AttentionPlan& plan) {
  if (plan.num_splits == 1) return 0;
  return static_cast<size_t>(plan.num_splits) * p.tokens * p.num_heads * (p.head_dim + 2);
}

// Merges the num_splits partials of every (token, head) into out (paged_attention_reduce.cu).
cudaError_t launch_attention_reduce(const PagedAttentionParams& p, const AttentionPlan& plan,
                                    cudaStream_t stream);

}  // namespace taco::cuda
