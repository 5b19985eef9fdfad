#include "model/llama.h"

#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>

#include "ops/communicator.h"
#include "ops/device_memory.h"
#include "ops/ops.h"

namespace taco {

namespace {

std::string shape_str(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Reads one tensor of the expected shape, converted to dtype, and moves it to the device.
class Loader {
 public:
  Loader(const Checkpoint& w, at::ScalarType dtype, const at::Device& device)
      : w_(w), dtype_(dtype), device_(device) {}

  at::Tensor get(const std::string& name, const std::vector<int64_t>& shape) const {
    check_shape(name, shape);
    return w_.load(name, dtype_).to(device_);
  }

  // Stacks several projections of the same input into one GEMM weight [sum(out), in]. Parts all
  // stored block-quantized stay quantized (in one packed layout), parts all FP8 stay FP8; a mix
  // is loaded as dtype.
  Linear fused(const std::string& prefix, const std::vector<std::string>& parts,
               const std::vector<int64_t>& outs, int64_t in, bool bias) const {
    std::vector<std::string> names;
    for (size_t i = 0; i < parts.size(); ++i) {
      names.push_back(prefix + parts[i] + ".weight");
      check_shape(names.back(), {outs[i], in});
    }
    Linear l;
    l.weight = weight(names, in);
    if (bias) {
      std::vector<at::Tensor> bs;
      for (size_t i = 0; i < parts.size(); ++i) {
        bs.push_back(get(prefix + parts[i] + ".bias", {outs[i]}));
      }
      l.bias = bs.size() == 1 ? bs[0] : at::cat(bs, 0).contiguous();
    }
    return l;
  }

  // One projection weight [out, in] (the lm_head, or the tied embedding).
  ops::LinearWeight single(const std::string& name, const std::vector<int64_t>& shape) const {
    check_shape(name, shape);
    return weight({name}, shape[1]);
  }

 private:
  void check_shape(const std::string& name, const std::vector<int64_t>& shape) const {
    const std::vector<int64_t> s = w_.shape(name);
    if (s != shape) {
      throw std::invalid_argument("weight \"" + name + "\" has shape " + shape_str(s) +
                                  ", the config implies " + shape_str(shape));
    }
  }

  ops::LinearWeight weight(const std::vector<std::string>& names, int64_t in) const {
    std::vector<ops::QuantizedRows> parts;
    for (const std::string& n : names) {
      std::optional<ops::QuantizedRows> q = w_.quantized(n);
      if (!q) break;
      parts.push_back(std::move(*q));
    }
    if (parts.size() == names.size()) {
      return ops::prepare_quant_linear_weight(parts, in, dtype_, device_);
    }
    std::vector<ops::Fp8Rows> fp8;
    for (const std::string& n : names) {
      std::optional<ops::Fp8Rows> f = w_.fp8(n);
      if (!f) break;
      fp8.push_back(std::move(*f));
    }
    if (fp8.size() == names.size()) return ops::prepare_fp8_linear_weight(fp8, in, dtype_, device_);
    std::vector<at::Tensor> ws;
    for (const std::string& n : names) ws.push_back(w_.load(n, dtype_).to(device_));
    return ops::prepare_linear_weight(ws.size() == 1 ? ws[0] : at::cat(ws, 0));
  }

  const Checkpoint& w_;
  at::ScalarType dtype_;
  at::Device device_;
};

}  // namespace

LlamaModel::LlamaModel(const ModelConfig& full, const Checkpoint& whole, at::ScalarType dtype,
                       int64_t max_positions, const at::Device& device, const TensorParallel* tp,
                       double offload_bytes)
    : config_(full), dtype_(dtype), device_(device) {
  std::optional<ShardedCheckpoint> shard;
  int64_t vocab_rows = full.vocab_size;
  ops::Communicator* reduce = nullptr;
  if (tp != nullptr && tp->size > 1) {
    tp_ = *tp;
    config_ = local_config(full, tp_);
    shard.emplace(whole, full, tp_);
    vocab_rows = tp_.vocab_rows;
    reduce = tp_.comm;
  }
  const Checkpoint& weights = shard ? static_cast<const Checkpoint&>(*shard) : whole;
  const ModelConfig& c = config_;
  attn_shape_ = {c.num_heads, c.num_kv_heads, c.head_dim, c.rms_norm_eps};
  Loader load(weights, dtype, device);
  const int64_t H = c.hidden_size, I = c.intermediate_size, D = c.head_dim;
  const int64_t q = c.num_heads * D, kv = c.num_kv_heads * D;
  embed_ = load.get("model.embed_tokens.weight", {vocab_rows, H});
  if (!c.tie_word_embeddings) {
    lm_head_ = load.single("lm_head.weight", {vocab_rows, H});
  } else if (weights.quantized("model.embed_tokens.weight")) {
    lm_head_ = load.single("model.embed_tokens.weight", {vocab_rows, H});
  } else {
    lm_head_ = ops::prepare_linear_weight(embed_);
  }
  norm_ = load.get("model.norm.weight", {H});
  // Offloaded layers move to host memory as soon as they load, so the device never holds more
  // than the kept layers and one offloaded layer.
  if (offload_bytes > 0) offload_ = std::make_unique<WeightOffload>(offload_bytes, device);
  layers_.resize(c.num_layers);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    Layer& l = layers_[i];
    l.input_norm = load.get(p + "input_layernorm.weight", {H});
    l.post_norm = load.get(p + "post_attention_layernorm.weight", {H});
    l.attn.qkv =
        load.fused(p + "self_attn.", {"q_proj", "k_proj", "v_proj"}, {q, kv, kv}, H, c.qkv_bias);
    l.attn.o = load.fused(p + "self_attn.", {"o_proj"}, {H}, q, c.o_bias);
    l.attn.o.reduce = reduce;
    // KV-cache scales of FP8 checkpoints (used by 8-bit caches only).
    for (auto [name, scale] :
         {std::pair{"k_scale", &l.attn.k_scale}, {"v_scale", &l.attn.v_scale}}) {
      const std::string n = p + "self_attn." + name;
      if (!weights.has(n)) continue;
      const at::Tensor t = weights.load(n, at::kFloat).reshape({-1});
      *scale = t.numel() == 1 ? t[0].item<double>() : 0.0;
      if (!(*scale > 0.0) || !std::isfinite(*scale)) {
        throw std::invalid_argument("\"" + n + "\" must be one positive finite value");
      }
    }
    if (c.qk_norm) {
      l.attn.q_norm = load.get(p + "self_attn.q_norm.weight", {D});
      l.attn.k_norm = load.get(p + "self_attn.k_norm.weight", {D});
    }
    l.mlp.gate_up = load.fused(p + "mlp.", {"gate_proj", "up_proj"}, {I, I}, H, c.mlp_bias);
    l.mlp.down = load.fused(p + "mlp.", {"down_proj"}, {H}, I, c.mlp_bias);
    l.mlp.down.reduce = reduce;
    if (offload_) offload_->offer(tensors_of(l));
  }
  rope_cache_ = build_rope_cache(c.rope, D, max_positions).to(device);
  if (offload_) {
    offload_->finish();
    if (offload_->num_offloaded() == 0) offload_.reset();
    // The offloaded layers' device memory goes back to the device before the KV cache is sized.
    if (device.is_cuda()) ops::release_cached_memory();
  }
}

LlamaModel::~LlamaModel() = default;

int64_t LlamaModel::offloaded_layers() const { return offload_ ? offload_->num_offloaded() : 0; }
int64_t LlamaModel::offloaded_bytes() const { return offload_ ? offload_->offloaded_bytes() : 0; }

std::vector<at::Tensor*> LlamaModel::tensors_of(Layer& l) {
  std::vector<at::Tensor*> out{&l.input_norm, &l.post_norm, &l.attn.q_norm, &l.attn.k_norm};
  for (Linear* lin : {&l.attn.qkv, &l.attn.o, &l.mlp.gate_up, &l.mlp.down}) {
    ops::LinearWeight& w = lin->weight;
    for (at::Tensor* t : {&lin->bias, &w.plain, &w.skinny, &w.onednn, &w.quant, &w.in_perm, &w.fp8,
                          &w.fp8_scale, &w.w4_codes, &w.w4_d, &w.w4_m, &w.w4_z}) {
      out.push_back(t);
    }
  }
  return out;
}

void LlamaModel::set_kv_cache_scales(const std::vector<double>& scales) {
  if (scales.size() != layers_.size()) {
    throw std::invalid_argument("KV cache scales: " + std::to_string(scales.size()) +
                                " given for " + std::to_string(layers_.size()) + " layers");
  }
  for (size_t l = 0; l < layers_.size(); ++l) {
    layers_[l].attn.k_scale = layers_[l].attn.v_scale = scales[l];
  }
}

// A projection's LoRA parts (the projections fused into it) and its input width.
struct LlamaModel::LoraParts {
  Linear* linear;
  std::vector<LoraTarget> targets;
  std::vector<int64_t> outs;  // each part's output rows
  int64_t in;
};

std::vector<LlamaModel::LoraParts> LlamaModel::lora_parts(Layer& l) const {
  const ModelConfig& c = config_;
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  const int64_t q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
  return {{&l.attn.qkv, {LoraTarget::kQ, LoraTarget::kK, LoraTarget::kV}, {q, kv, kv}, H},
          {&l.attn.o, {LoraTarget::kO}, {H}, q},
          {&l.mlp.gate_up, {LoraTarget::kGate, LoraTarget::kUp}, {I, I}, H},
          {&l.mlp.down, {LoraTarget::kDown}, {H}, I}};
}

void LlamaModel::allocate_lora_slots(int64_t num_slots, int64_t max_rank, at::ScalarType dtype) {
  if (tp_.size > 1) {
    throw std::invalid_argument("LoRA adapters are not supported with tensor parallelism yet");
  }
  const auto options = at::TensorOptions().dtype(dtype).device(device_);
  for (Layer& l : layers_) {
    for (const LoraParts& p : lora_parts(l)) {
      LoraWeight& w = p.linear->lora;
      const auto n = static_cast<int64_t>(p.targets.size());
      int64_t out = 0;
      w.slice_start = {0};
      for (int64_t o : p.outs) w.slice_start.push_back(out += o);
      w.a = at::zeros({num_slots, p.in, n * max_rank}, options);
      w.b = at::zeros({num_slots, max_rank, out}, options);
    }
  }
  lora_slots_ = num_slots;
}

void LlamaModel::set_lora_slot(int64_t slot, const LoraAdapter* adapter) {
  for (size_t i = 0; i < layers_.size(); ++i) {
    for (const LoraParts& p : lora_parts(layers_[i])) {
      LoraWeight& w = p.linear->lora;
      if (!w.a.defined()) throw std::logic_error("LoRA slots are not allocated");
      at::Tensor a = w.a[slot], b = w.b[slot];  // [in, n * R], [R, out]
      a.zero_();
      b.zero_();
      if (adapter == nullptr) continue;
      const int64_t R = b.size(0);
      for (size_t s = 0; s < p.targets.size(); ++s) {
        const LoraModule& m = adapter->modules[i][static_cast<int>(p.targets[s])];
        if (!m.a.defined()) continue;
        const int64_t r = m.a.size(0);
        a.narrow(1, static_cast<int64_t>(s) * R, r).copy_(m.a.t());
        b.narrow(0, 0, r)
            .narrow(1, w.slice_start[s], w.slice_start[s + 1] - w.slice_start[s])
            .copy_(m.b.t());
      }
    }
  }
}

at::Tensor LlamaModel::forward(const at::Tensor& input_ids, const AttentionMetadata& md,
                               std::vector<at::Tensor>& kv_caches, const at::Tensor& embed_rows,
                               const at::Tensor& embed_values) const {
  // residual carries the running sum of the stream; hidden is the normalized input of each block.
  at::Tensor residual = embed(input_ids);
  if (embed_rows.defined()) residual.index_copy_(0, embed_rows, embed_values);
  at::Tensor hidden = at::empty_like(residual);
  ops::rms_norm(hidden, residual, layers_[0].input_norm, config_.rms_norm_eps);
  // Offloaded layers: layer i + 1's copy starts when layer i's weights are taken, so it runs
  // beside layer i's compute.
  // (tensors_of only lists the tensors; nothing here writes through the pointers.)
  const auto host = [this](size_t i) { return tensors_of(const_cast<Layer&>(layers_[i])); };
  if (offload_) offload_->prefetch(0, host(0));
  Layer staged;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer* current = &layers_[i];
    if (offload_ && offload_->offloaded(i)) {
      staged = layers_[i];
      const std::vector<at::Tensor> device_copies = offload_->acquire(i, host(i));
      std::vector<at::Tensor*> slots = tensors_of(staged);
      for (size_t k = 0; k < slots.size(); ++k) *slots[k] = device_copies[k];
      if (offload_->offloaded(i + 1)) {
        offload_->prefetch(i + 1, host(i + 1));
      }
      current = &staged;
    }
    const Layer& l = *current;
    if (i > 0) ops::fused_add_rms_norm(hidden, residual, l.input_norm, config_.rms_norm_eps);
    hidden = attention_forward(l.attn, attn_shape_, hidden, md, rope_cache_, kv_caches[i]);
    ops::fused_add_rms_norm(hidden, residual, l.post_norm, config_.rms_norm_eps);
    hidden = mlp_forward(l.mlp, hidden, md.lora_slots);
  }
  ops::fused_add_rms_norm(hidden, residual, norm_, config_.rms_norm_eps);
  return hidden;
}

// A rank holds vocabulary rows [vocab_start, vocab_start + vocab_rows): ids outside look up row
// 0 and are zeroed, and the sum over the ranks is the embedding.
at::Tensor LlamaModel::embed(const at::Tensor& input_ids) const {
  if (tp_.size == 1) return at::embedding(embed_, input_ids);
  const at::Tensor local = input_ids - tp_.vocab_start;
  const at::Tensor outside = at::logical_or(local < 0, local >= tp_.vocab_rows);
  at::Tensor e = at::embedding(embed_, local.masked_fill(outside, 0));
  e.masked_fill_(outside.unsqueeze(1), 0);
  tp_.comm->all_reduce_sum(e);
  return e;
}

// Each rank projects onto its vocabulary slice, padded to vocab_per_rank columns; the gathered
// [size * N, per] blocks are laid side by side and the padding dropped.
at::Tensor LlamaModel::compute_logits(const at::Tensor& hidden) const {
  at::Tensor logits = ops::linear(hidden, lm_head_, at::Tensor(), /*float_out=*/true);
  if (tp_.size == 1) return logits;
  const int64_t N = hidden.size(0), per = tp_.vocab_per_rank;
  if (logits.size(1) < per) logits = at::constant_pad_nd(logits, {0, per - logits.size(1)});
  const at::Tensor all = tp_.comm->all_gather(logits.contiguous());  // [size * N, per]
  return all.view({tp_.size, N, per})
      .permute({1, 0, 2})
      .reshape({N, tp_.size * per})
      .narrow(1, 0, config_.vocab_size)
      .contiguous();
}

}  // namespace taco
