// Paged attention over a flat batch that mixes prefill chunks and decodes: one launch (plus a
// reduce launch when the keys are split), the same contract as the CPU kernel.
//
// KV cache layout, shared with the CPU backend (cpp/ops/ops.h): per layer one contiguous tensor
//   kv[2, num_blocks, num_kv_heads, block_size, head_dim]; kv[0] = K, kv[1] = V.
// Token at position p of sequence b lives in block block_table[b][p / block_size], row
// p % block_size. Query token i of sequence b (q_len_b = query_start_loc[b+1] - query_start_loc[b])
// sits at position seq_lens[b] - q_len_b + i and attends to positions <= its own (causal).
// GQA: query head h reads kv head h / (num_heads / num_kv_heads).
//
// Plan (see paged_attention.cu for the kernel):
// - Work unit = one CTA of 4 warps owning up to 16 query rows: rows are (token, head) pairs of one
//   sequence and one kv head, tokens of a tile times the GQA group's heads, so a decode's whole
//   group shares each K/V read (group >= 16: 16 heads of one token per CTA).
// - The CTA walks its keys in chunks of 32: K and V of the chunk are staged in shared memory by
//   the whole CTA with 16-byte loads; each warp scores its rows lane-per-key, runs an online
//   softmax (running max and sum, nothing of size seq_len is materialized), and accumulates P.V
//   lane-per-feature in registers.
// - Split-KV: when the batch's CTAs would not fill the GPU (decode with few sequences and long
//   contexts), the keys are cut into num_splits partitions of partition_keys each (grid z). Each
//   split writes an unnormalized partial output with its max and sum into the caller's float32
//   workspace, and paged_attention_reduce.cu merges them by log-sum-exp. The plan depends only on
//   the params and the device's SM count, so workspace size and launch agree.
// - Prefill on CUDA cores is correct but not fast; a tensor-core (mma / wgmma) tile for q_len > 1
//   is the next step.
//
// Decode path (paged_attention_decode.cu), taken when max_query_len == 1 and head_dim is 64, 96,
// 128 or 256: one CTA per (sequence, kv head, key split) computes every GQA head of its kv head
// (up to 8; larger groups take several CTAs) against each key, read once. Threads own a slice of
// head_dim: a few threads share a key, each with a 16-byte piece of K and V, so P.V needs no
// reduction and each thread copies exactly the smem slots it reads (cp.async pipeline of several
// stages per thread, no barrier in the key loop). Splits are chosen from the occupancy so the grid
// fills the GPU, and long contexts are always cut (reduction as above). Written without a GPU:
// bench_kernels measures it against the mixed kernel (decode_variant -1).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "taco/cuda/dtype.h"
#include "taco/kernels/attention.h"

namespace taco::cuda {

using kernels::PagedAttentionParams;

// Name of decode configuration v ("w4 k2 s4": warps per CTA, keys per thread per stage, cp.async
// stages; "mma w2 s3": the tensor-core kernel, mma.m16n8k16 with the GQA heads as rows and whole
// 16-key tiles per warp), or null past the last one. Variant 0 is the default and serves every
// dtype, head_dim and group; the others exist for bf16, head_dim 128 and groups of 3 or 4 only
// (the bench shape), and paged_attention returns cudaErrorInvalidValue for them elsewhere.
const char* paged_attention_decode_variant_name(int v);

// The head sizes the kernels are built for.
constexpr bool paged_attention_head_dim_supported(int64_t head_dim) {
  return head_dim == 64 || head_dim == 96 || head_dim == 128 || head_dim == 256;
}

// Float32 scratch the call needs for split-KV partials (0 when it will not split).
size_t paged_attention_workspace_bytes(const PagedAttentionParams& p);

// cudaErrorInvalidValue for an unsupported head_dim or a missing workspace.
cudaError_t paged_attention(const PagedAttentionParams& p, cudaStream_t stream);

}  // namespace taco::cuda
