// ATen adapters over the device kernels: each function checks shapes/dtypes, fills a params
// struct and dispatches to cpp/cpu (CPU tensors) or cuda/ (CUDA tensors, when built).
//
// KV cache layout (the same on CPU and CUDA; taco/kernels/kv_cache.h defines it):
//   per layer one tensor kv[2, num_blocks, num_kv_heads, block_size, head_dim]; kv[0] holds K,
//   kv[1] holds V. Token at position p of a sequence lives in block block_table[p / block_size],
//   row p % block_size. A slot id is block * block_size + row.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "ops/linear.h"  // linear projections, declared with their weight layouts
#include "taco/kernels/kv_cache.h"

namespace taco::ops {

// out[T, H] = x / rms(x) * w (eps inside the sqrt), computed in float32.
void rms_norm(at::Tensor& out, const at::Tensor& x, const at::Tensor& weight, double eps);

// In place: residual[T, H] += x; x = rms_norm(residual) * w. residual keeps the sum.
void fused_add_rms_norm(at::Tensor& x, at::Tensor& residual, const at::Tensor& weight, double eps);

// In place rotary embedding of query [T, Hq * D] and key [T, Hkv * D] at positions [T] (int64).
// cos_sin_cache [max_pos, rot_dim] float32: cos in the first rot_dim/2 columns, sin after.
// is_neox: rotate halves (x[i], x[i + rot_dim/2]); else GPT-J pairs (x[2i], x[2i+1]).
void rotary_embedding(const at::Tensor& positions, at::Tensor& query, at::Tensor& key,
                      int64_t head_dim, const at::Tensor& cos_sin_cache, bool is_neox);

// out[T, I] = silu(x[:, :I]) * x[:, I:] for x [T, 2I].
void silu_and_mul(at::Tensor& out, const at::Tensor& x);

// LoRA: y[t] += (x[t] A^T) B^T with the A and B of token t's adapter slot (token_slot [T] int32,
// < 0: none). a [slots, in, slices * rank] and b [slots, rank, out] as taco/kernels/lora.h lays
// them out, slice_start the slices' first output columns and out (one to three slices).
void lora_apply(at::Tensor& y, const at::Tensor& x, const at::Tensor& a, const at::Tensor& b,
                const at::Tensor& token_slot, const std::vector<int64_t>& slice_start);

// Writes key/value [T, Hkv, D] into kv [2, num_blocks, Hkv, block_size, D] at slot_mapping [T]
// (int64; a negative slot skips the token). kv holds key's dtype, or (CPU) float8_e4m3fn /
// float8_e5m2: then key / k_scale and value / v_scale are stored (taco/kernels/kv_cache.h).
void write_kv_cache(const at::Tensor& key, const at::Tensor& value, at::Tensor& kv,
                    const at::Tensor& slot_mapping, double k_scale = 1.0, double v_scale = 1.0);

// The kernels' cache type of a kv tensor: its dtype is the model dtype or an 8-bit float.
kernels::KvCacheType kv_cache_type(const at::Tensor& kv);

// Paged attention for a flat batch of B sequences mixing prefill chunks and decodes.
// query [T, Hq, D]; out [T, Hq, D]; kv as above; query_start_loc [B+1] int32 (prefix sums of
// query lengths); seq_lens [B] int32 (context length including this step's tokens); block_table
// [B, max_blocks] int32. Query token i of sequence b sits at position seq_lens[b] - q_len_b + i
// and attends causally to positions <= its own. GQA: q head h reads kv head h / (Hq / Hkv).
// An 8-bit kv reads K as code value * k_scale and V as code value * v_scale.
void paged_attention(at::Tensor& out, const at::Tensor& query, const at::Tensor& kv,
                     const at::Tensor& query_start_loc, const at::Tensor& seq_lens,
                     const at::Tensor& block_table, double scale, int64_t max_query_len,
                     int64_t max_seq_len, double k_scale = 1.0, double v_scale = 1.0);

// Block moves over every layer's kv tensor: copy (CoW) within the device, swap between device
// and CPU caches with identical shapes per layer.
void copy_blocks(std::vector<at::Tensor>& kv_caches,
                 const std::vector<std::pair<int32_t, int32_t>>& src_dst);
void swap_blocks(const std::vector<at::Tensor>& src, std::vector<at::Tensor>& dst,
                 const std::vector<std::pair<int32_t, int32_t>>& src_dst);

}  // namespace taco::ops
