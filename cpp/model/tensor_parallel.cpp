#include "model/tensor_parallel.h"

#include <stdexcept>
#include <string>

#include "taco/kernels/quant.h"

namespace taco {

namespace {

void require_divisible(int64_t count, const char* what, int size) {
  if (count % size != 0) {
    throw std::invalid_argument("tensor_parallel_size " + std::to_string(size) +
                                " does not divide the model's " + what + " (" +
                                std::to_string(count) + ")");
  }
}

}  // namespace

TensorParallel plan_tensor_parallel(const ModelConfig& c, int rank, int size) {
  if (size < 1 || rank < 0 || rank >= size) {
    throw std::invalid_argument("tensor parallel rank " + std::to_string(rank) + " of " +
                                std::to_string(size) + " is out of range");
  }
  require_divisible(c.num_heads, "attention heads", size);
  require_divisible(c.intermediate_size, "intermediate_size", size);
  TensorParallel tp;
  tp.rank = rank;
  tp.size = size;
  tp.num_heads = c.num_heads / size;
  tp.q_head_start = rank * tp.num_heads;
  if (c.num_kv_heads >= size) {
    require_divisible(c.num_kv_heads, "KV heads", size);
    tp.num_kv_heads = c.num_kv_heads / size;
    tp.kv_head_start = rank * tp.num_kv_heads;
  } else {
    // Fewer KV heads than ranks: ranks r of one group of size / Hkv share KV head r / (size / Hkv),
    // the one their query heads attend with (query head h uses KV head h / (Hq / Hkv)).
    if (size % c.num_kv_heads != 0) {
      throw std::invalid_argument("tensor_parallel_size " + std::to_string(size) +
                                  " is not a multiple of the model's KV heads (" +
                                  std::to_string(c.num_kv_heads) +
                                  "), so they cannot be replicated evenly");
    }
    tp.num_kv_heads = 1;
    tp.kv_head_start = rank / (size / c.num_kv_heads);
  }
  tp.intermediate = c.intermediate_size / size;
  tp.inter_start = rank * tp.intermediate;
  tp.vocab_per_rank = (c.vocab_size + size - 1) / size;
  if ((size - 1) * tp.vocab_per_rank >= c.vocab_size) {
    throw std::invalid_argument("tensor_parallel_size " + std::to_string(size) +
                                ": the vocabulary (" + std::to_string(c.vocab_size) +
                                ") is too small to give every rank a slice of " +
                                std::to_string(tp.vocab_per_rank) + " rows");
  }
  tp.vocab_start = rank * tp.vocab_per_rank;
  tp.vocab_rows = std::min(tp.vocab_per_rank, c.vocab_size - tp.vocab_start);
  return tp;
}

ModelConfig local_config(const ModelConfig& c, const TensorParallel& tp) {
  ModelConfig l = c;
  l.num_heads = tp.num_heads;
  l.num_kv_heads = tp.num_kv_heads;
  l.intermediate_size = tp.intermediate;
  return l;
}

ShardedCheckpoint::ShardedCheckpoint(const Checkpoint& base, const ModelConfig& c,
                                     const TensorParallel& tp)
    : base_(base), config_(c), tp_(tp) {}

ShardedCheckpoint::Cut ShardedCheckpoint::cut(const std::string& name) const {
  const int64_t D = config_.head_dim;
  const auto is = [&](const char* suffix) { return name.ends_with(suffix); };
  const bool weight_or_bias = is(".weight") || is(".bias");
  const auto stem = [&](const char* part) {
    return name.ends_with(std::string(part) + ".weight") ||
           name.ends_with(std::string(part) + ".bias");
  };
  if (name == "model.embed_tokens.weight" || name == "lm_head.weight") {
    return {0, tp_.vocab_start, tp_.vocab_rows};
  }
  if (!weight_or_bias) return {};
  if (stem("self_attn.q_proj")) return {0, tp_.q_head_start * D, tp_.num_heads * D};
  if (stem("self_attn.k_proj") || stem("self_attn.v_proj")) {
    return {0, tp_.kv_head_start * D, tp_.num_kv_heads * D};
  }
  if (is("self_attn.o_proj.weight")) return {1, tp_.q_head_start * D, tp_.num_heads * D};
  if (stem("mlp.gate_proj") || stem("mlp.up_proj")) {
    return {0, tp_.inter_start, tp_.intermediate};
  }
  if (is("mlp.down_proj.weight")) return {1, tp_.inter_start, tp_.intermediate};
  return {};
}

std::vector<int64_t> ShardedCheckpoint::shape(const std::string& name) const {
  std::vector<int64_t> s = base_.shape(name);
  const Cut c = cut(name);
  if (c.dim >= 0 && c.dim < static_cast<int>(s.size())) s[c.dim] = c.count;
  return s;
}

at::Tensor ShardedCheckpoint::load(const std::string& name, at::ScalarType dtype) const {
  at::Tensor t = base_.load(name, dtype);
  const Cut c = cut(name);
  if (c.dim < 0 || c.dim >= t.dim()) return t;
  return t.narrow(c.dim, c.start, c.count).contiguous();
}

std::optional<ops::QuantizedRows> ShardedCheckpoint::quantized(const std::string& name) const {
  std::optional<ops::QuantizedRows> q = base_.quantized(name);
  const Cut c = cut(name);
  if (!q || c.dim < 0) return q;
  if (c.dim == 0) {
    q->rows = q->rows.narrow(0, c.start, c.count).contiguous();
    return q;
  }
  // Columns: whole blocks of the stored order only (an act-order weight's stored columns are
  // not the input's, so it loads dequantized and is cut there).
  const int64_t bv = kernels::quant_block_values(q->type);
  if (q->in_perm.defined() || c.start % bv != 0 || c.count % bv != 0) return std::nullopt;
  const int64_t bb = kernels::quant_block_bytes(q->type);
  q->rows = q->rows.narrow(1, c.start / bv * bb, c.count / bv * bb).contiguous();
  q->cols = c.count;
  return q;
}

std::optional<ops::Fp8Rows> ShardedCheckpoint::fp8(const std::string& name) const {
  std::optional<ops::Fp8Rows> f = base_.fp8(name);
  const Cut c = cut(name);
  if (!f || c.dim < 0) return f;
  f->codes = f->codes.narrow(c.dim, c.start, c.count).contiguous();
  if (c.dim == 0) f->scale = f->scale.narrow(0, c.start, c.count).contiguous();
  return f;
}

}  // namespace taco
