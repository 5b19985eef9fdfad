#include "model/layers.h"

#include <cmath>

#include "ops/ops.h"

namespace taco {

at::Tensor Linear::operator()(const at::Tensor& x, const at::Tensor& lora_slots) const {
  const bool adapt = lora_slots.defined() && lora.a.defined();
  if (reduce == nullptr && !adapt) return ops::linear(x, weight, bias);
  at::Tensor y = ops::linear(x, weight, at::Tensor());
  if (adapt) ops::lora_apply(y, x, lora.a, lora.b, lora_slots, lora.slice_start);
  if (reduce != nullptr) reduce->all_reduce_sum(y);
  if (bias.defined()) y.add_(bias);
  return y;
}

namespace {

// HF: inv_freq = 1 / base ** (arange(0, dim, 2).float() / dim), all in float32.
at::Tensor default_inv_freq(double base, int64_t head_dim) {
  at::Tensor exponent = at::arange(0, head_dim, 2, at::kLong).to(at::kFloat) / head_dim;
  return at::reciprocal(at::pow(base, exponent));
}

// HF _compute_llama3_parameters: low frequencies divided by factor, high ones kept, the band
// between smoothly interpolated. `scalar / tensor` is written as reciprocal * scalar because that
// is how torch evaluates it, which keeps the cache bit-identical to HF's.
at::Tensor llama3_inv_freq(const RopeConfig& r, at::Tensor inv_freq) {
  const double old_len = static_cast<double>(r.original_max_position_embeddings);
  const double low_freq_wavelen = old_len / r.low_freq_factor;
  const double high_freq_wavelen = old_len / r.high_freq_factor;
  at::Tensor wavelen = at::reciprocal(inv_freq) * (2 * M_PI);
  at::Tensor scaled = at::where(wavelen > low_freq_wavelen, inv_freq / r.factor, inv_freq);
  at::Tensor smooth = (at::reciprocal(wavelen) * old_len - r.low_freq_factor) /
                      (r.high_freq_factor - r.low_freq_factor);
  at::Tensor smoothed = (1 - smooth) * scaled / r.factor + smooth * scaled;
  at::Tensor medium =
      at::logical_not(wavelen < high_freq_wavelen) * at::logical_not(wavelen > low_freq_wavelen);
  return at::where(medium, smoothed, scaled);
}

}  // namespace

at::Tensor rope_inv_freq(const RopeConfig& rope, int64_t head_dim) {
  at::Tensor inv_freq = default_inv_freq(rope.theta, head_dim);
  if (!rope.freq_factors.empty()) {
    return inv_freq / at::tensor(rope.freq_factors, at::kDouble).to(at::kFloat);
  }
  if (rope.type == "linear") return inv_freq / rope.factor;
  if (rope.type == "llama3") return llama3_inv_freq(rope, inv_freq);
  return inv_freq;
}

at::Tensor build_rope_cache(const RopeConfig& rope, int64_t head_dim, int64_t max_positions) {
  at::Tensor inv_freq = rope_inv_freq(rope, head_dim);
  // freqs[p, i] = float(p) * inv_freq[i], as HF's forward computes it per position.
  at::Tensor pos = at::arange(max_positions, at::kLong).to(at::kFloat);
  at::Tensor freqs = pos.unsqueeze(1) * inv_freq.unsqueeze(0);
  return at::cat({freqs.cos(), freqs.sin()}, 1).contiguous();
}

at::Tensor attention_forward(const AttentionWeights& w, const AttentionShape& s,
                             const at::Tensor& hidden, const AttentionMetadata& md,
                             const at::Tensor& rope_cache, at::Tensor& kv_cache) {
  const int64_t T = hidden.size(0);
  const int64_t D = s.head_dim;
  const int64_t q_size = s.num_heads * D;
  const int64_t kv_size = s.num_kv_heads * D;
  at::Tensor qkv = w.qkv(hidden, md.lora_slots);  // [T, q_size + 2 kv_size]
  // Column views of qkv (row stride q_size + 2 kv_size): rope, the cache write and attention
  // take strided rows, so q, k and v are never copied out.
  at::Tensor q = qkv.narrow(1, 0, q_size);
  at::Tensor k = qkv.narrow(1, q_size, kv_size);
  at::Tensor v = qkv.narrow(1, q_size + kv_size, kv_size);
  if (w.q_norm.defined()) {
    // Qwen3: RMSNorm over each head's D features before rope.
    at::Tensor qn = at::empty({T * s.num_heads, D}, q.options());
    at::Tensor kn = at::empty({T * s.num_kv_heads, D}, k.options());
    ops::rms_norm(qn, q.reshape({T * s.num_heads, D}), w.q_norm, s.norm_eps);
    ops::rms_norm(kn, k.reshape({T * s.num_kv_heads, D}), w.k_norm, s.norm_eps);
    q = qn.view({T, q_size});
    k = kn.view({T, kv_size});
  }
  ops::rotary_embedding(md.positions, q, k, D, rope_cache, /*is_neox=*/true);
  ops::write_kv_cache(k.view({T, s.num_kv_heads, D}), v.view({T, s.num_kv_heads, D}), kv_cache,
                      md.slot_mapping, w.k_scale, w.v_scale);
  at::Tensor out = at::empty({T, s.num_heads, D}, q.options());
  ops::paged_attention(out, q.view({T, s.num_heads, D}), kv_cache, md.query_start_loc, md.seq_lens,
                       md.block_table, 1.0 / std::sqrt(static_cast<double>(D)), md.max_query_len,
                       md.max_seq_len, w.k_scale, w.v_scale);
  return w.o(out.view({T, q_size}), md.lora_slots);
}

at::Tensor mlp_forward(const MlpWeights& w, const at::Tensor& hidden,
                       const at::Tensor& lora_slots) {
  at::Tensor gate_up = w.gate_up(hidden, lora_slots);  // [T, 2 I]
  at::Tensor act = at::empty({hidden.size(0), gate_up.size(1) / 2}, gate_up.options());
  ops::silu_and_mul(act, gate_up);
  return w.down(act, lora_slots);
}

}  // namespace taco
