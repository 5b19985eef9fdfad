// Building blocks shared by the Llama-family decoders: linear projections, the rotary cache,
// the paged attention block and the gated MLP. Activations are [T, ...] over one flat batch.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "model/model_config.h"
#include "ops/communicator.h"
#include "ops/linear.h"

namespace taco {

// Per-step batch layout, shared by every layer (see ops::paged_attention).
struct AttentionMetadata {
  at::Tensor positions;        // [T] int64
  at::Tensor slot_mapping;     // [T] int64
  at::Tensor query_start_loc;  // [B+1] int32
  at::Tensor seq_lens;         // [B] int32
  at::Tensor block_table;      // [B, max_blocks] int32
  int64_t max_query_len = 0;
  int64_t max_seq_len = 0;
  // [T] int32: each token's LoRA slot (< 0: none); undefined when no token has one.
  at::Tensor lora_slots;
};

// A projection's LoRA slots (taco/kernels/lora.h's layout): a [slots, in, parts * rank] and
// b [slots, rank, out] in the adapters' dtype, zero where a slot's adapter leaves a part alone;
// slice_start the parts' first output rows and out. Undefined when LoRA is off.
struct LoraWeight {
  at::Tensor a;
  at::Tensor b;
  std::vector<int64_t> slice_start;
};

// y = x W^T + b with W [out, in] in the layouts the GEMMs read (ops/linear.h); b optional
// (undefined when absent). A row-parallel shard (tensor parallelism) has `reduce`: x W^T is this
// rank's partial sum, all-reduced before b is added.
// With lora_slots defined, each token adds its adapter's update (before the all-reduce: the
// update of a row-parallel shard is a partial sum too).
struct Linear {
  ops::LinearWeight weight;
  at::Tensor bias;
  ops::Communicator* reduce = nullptr;
  LoraWeight lora;
  at::Tensor operator()(const at::Tensor& x, const at::Tensor& lora_slots = {}) const;
};

// Inverse frequencies [head_dim / 2] float32, bit-identical to HF's rope_init functions.
at::Tensor rope_inv_freq(const RopeConfig& rope, int64_t head_dim);

// cos/sin cache [max_positions, head_dim] float32 (cos in the first half, sin in the second),
// with inverse frequencies computed exactly as HF's rope_init functions do in float32.
at::Tensor build_rope_cache(const RopeConfig& rope, int64_t head_dim, int64_t max_positions);

struct AttentionWeights {
  Linear qkv;         // [(Hq + 2 Hkv) D, H]: q, k, v projections stacked
  Linear o;           // [H, Hq D]
  at::Tensor q_norm;  // [D] per-head RMSNorm weights (Qwen3), else undefined
  at::Tensor k_norm;
  // 8-bit KV caches: K and V are stored divided by these (the checkpoint's k_scale / v_scale).
  double k_scale = 1.0;
  double v_scale = 1.0;
};

struct AttentionShape {
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  double norm_eps = 1e-6;
};

// hidden [T, H] -> [T, H]: projections, optional q/k norm, rope, cache write, paged attention.
at::Tensor attention_forward(const AttentionWeights& w, const AttentionShape& shape,
                             const at::Tensor& hidden, const AttentionMetadata& md,
                             const at::Tensor& rope_cache, at::Tensor& kv_cache);

struct MlpWeights {
  Linear gate_up;  // [2 I, H]: gate rows then up rows
  Linear down;     // [H, I]
};

// hidden [T, H] -> [T, H]: down(silu(gate(x)) * up(x)).
at::Tensor mlp_forward(const MlpWeights& w, const at::Tensor& hidden,
                       const at::Tensor& lora_slots = {});

}  // namespace taco
