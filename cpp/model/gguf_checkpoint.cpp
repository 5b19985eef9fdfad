#include "model/gguf_checkpoint.h"

#include <cstring>
#include <optional>
#include <stdexcept>

#include "ops/linear.h"

namespace taco {

namespace {

struct Arch {
  const char* gguf;
  const char* hf;
  ModelFamily family;
  bool rope_interleaved;  // llama.cpp's converter permutes q/k rows (its Llama rope is GPT-J style)
};

constexpr Arch kArchs[] = {
    {"llama", "LlamaForCausalLM", ModelFamily::kLlama, true},
    {"qwen2", "Qwen2ForCausalLM", ModelFamily::kQwen2, false},
    {"qwen3", "Qwen3ForCausalLM", ModelFamily::kQwen3, false},
};

const Arch& find_arch(const GgufFile& f) {
  const std::string name = f.get_string("general.architecture", "");
  for (const Arch& a : kArchs) {
    if (name == a.gguf) return a;
  }
  fail_file(f.path(), "general.architecture \"" + name + "\" is not supported (supported: " +
                          supported_gguf_architectures() + ")");
}

// The GGUF name of each per-layer tensor, by HF suffix.
struct LayerName {
  const char* hf;
  const char* gguf;
  int rope;  // 1: q rows (num_heads), 2: k rows (num_kv_heads), 0: none
};

constexpr LayerName kLayerNames[] = {
    {"input_layernorm.weight", "attn_norm.weight", 0},
    {"post_attention_layernorm.weight", "ffn_norm.weight", 0},
    {"self_attn.q_proj.weight", "attn_q.weight", 1},
    {"self_attn.q_proj.bias", "attn_q.bias", 1},
    {"self_attn.k_proj.weight", "attn_k.weight", 2},
    {"self_attn.k_proj.bias", "attn_k.bias", 2},
    {"self_attn.v_proj.weight", "attn_v.weight", 0},
    {"self_attn.v_proj.bias", "attn_v.bias", 0},
    {"self_attn.o_proj.weight", "attn_output.weight", 0},
    {"self_attn.o_proj.bias", "attn_output.bias", 0},
    {"self_attn.q_norm.weight", "attn_q_norm.weight", 0},
    {"self_attn.k_norm.weight", "attn_k_norm.weight", 0},
    {"mlp.gate_proj.weight", "ffn_gate.weight", 0},
    {"mlp.gate_proj.bias", "ffn_gate.bias", 0},
    {"mlp.up_proj.weight", "ffn_up.weight", 0},
    {"mlp.up_proj.bias", "ffn_up.bias", 0},
    {"mlp.down_proj.weight", "ffn_down.weight", 0},
    {"mlp.down_proj.bias", "ffn_down.bias", 0},
};

std::optional<kernels::QuantType> quant_type(uint32_t ggml) {
  switch (ggml) {
    case 2:
      return kernels::QuantType::kQ4_0;
    case 3:
      return kernels::QuantType::kQ4_1;
    case 6:
      return kernels::QuantType::kQ5_0;
    case 7:
      return kernels::QuantType::kQ5_1;
    case 8:
      return kernels::QuantType::kQ8_0;
    case 12:
      return kernels::QuantType::kQ4_K;
    case 13:
      return kernels::QuantType::kQ5_K;
    case 14:
      return kernels::QuantType::kQ6_K;
    default:
      return std::nullopt;
  }
}

std::optional<at::ScalarType> float_type(uint32_t ggml) {
  switch (ggml) {
    case 0:
      return at::kFloat;
    case 1:
      return at::kHalf;
    case 30:
      return at::kBFloat16;
    default:
      return std::nullopt;
  }
}

int64_t required_int(const GgufFile& f, const std::string& key) {
  const int64_t v = f.get_int(key, -1);
  if (v <= 0) fail_file(f.path(), "metadata \"" + key + "\" is missing or not positive");
  return v;
}

}  // namespace

std::string supported_gguf_architectures() {
  std::string out;
  for (const Arch& a : kArchs) out += (out.empty() ? "" : ", ") + std::string(a.gguf);
  return out;
}

ModelConfig gguf_model_config(const GgufFile& f) {
  const Arch& arch = find_arch(f);
  const std::string p = std::string(arch.gguf) + ".";
  ModelConfig c;
  c.architecture = arch.hf;
  c.family = arch.family;
  c.hidden_size = required_int(f, p + "embedding_length");
  c.intermediate_size = required_int(f, p + "feed_forward_length");
  c.num_layers = required_int(f, p + "block_count");
  c.num_heads = required_int(f, p + "attention.head_count");
  c.num_kv_heads = f.get_int(p + "attention.head_count_kv", c.num_heads);
  if (c.num_layers > 4096 || c.num_heads > 4096 || c.num_kv_heads <= 0 ||
      c.num_heads % c.num_kv_heads != 0) {
    fail_file(f.path(), "layer or attention head counts out of range");
  }
  c.head_dim = f.get_int(p + "attention.key_length", c.hidden_size / c.num_heads);
  if (c.head_dim <= 0 || c.head_dim % 2 != 0 ||
      f.get_int(p + "attention.value_length", c.head_dim) != c.head_dim) {
    fail_file(f.path(), "attention key/value lengths must be equal and even");
  }
  if (f.get_int(p + "rope.dimension_count", c.head_dim) != c.head_dim) {
    fail_file(f.path(), "partial rotary embeddings (" + p +
                            "rope.dimension_count < head size) are not supported");
  }
  c.max_position_embeddings = f.get_int(p + "context_length", 2048);
  if (c.max_position_embeddings <= 0) fail_file(f.path(), p + "context_length must be positive");
  c.rms_norm_eps = f.get_float(p + "attention.layer_norm_rms_epsilon", 1e-5);
  c.rope.theta = f.get_float(p + "rope.freq_base", 10000.0);
  const std::string scaling = f.get_string(p + "rope.scaling.type", "none");
  if (scaling == "linear") {
    c.rope.type = "linear";
    c.rope.factor = f.get_float(p + "rope.scaling.factor", 1.0);
    if (!(c.rope.factor > 0)) fail_file(f.path(), p + "rope.scaling.factor must be positive");
  } else if (scaling != "none") {
    fail_file(f.path(), "rope scaling \"" + scaling + "\" is not supported (none, linear)");
  }
  if (const GgufTensor* t = f.tensor("rope_freqs.weight")) {
    if (t->type != 0 || t->shape != std::vector<int64_t>{c.head_dim / 2}) {
      fail_file(f.path(), "rope_freqs.weight must be F32 [head_size / 2]");
    }
    const auto* v = reinterpret_cast<const float*>(f.data(*t));
    for (int64_t i = 0; i < c.head_dim / 2; ++i) {
      if (!(v[i] > 0)) fail_file(f.path(), "rope_freqs.weight must be positive");
      c.rope.freq_factors.push_back(v[i]);
    }
  }
  const GgufTensor* embed = f.tensor("token_embd.weight");
  if (!embed || embed->shape.size() != 2) {
    fail_file(f.path(), "missing 2-D tensor \"token_embd.weight\"");
  }
  c.vocab_size = embed->shape[0];
  c.tie_word_embeddings = f.tensor("output.weight") == nullptr;
  const bool attn_bias = f.tensor("blk.0.attn_q.bias") != nullptr;
  c.qkv_bias = arch.family == ModelFamily::kQwen2 || attn_bias;
  c.o_bias = f.tensor("blk.0.attn_output.bias") != nullptr;
  c.mlp_bias = f.tensor("blk.0.ffn_up.bias") != nullptr;
  c.qk_norm = arch.family == ModelFamily::kQwen3;
  const int64_t eos = f.get_int("tokenizer.ggml.eos_token_id", -1);
  if (eos >= 0 && eos < c.vocab_size) c.eos_token_ids.push_back(static_cast<int32_t>(eos));
  return c;
}

GgufCheckpoint::GgufCheckpoint(std::shared_ptr<const GgufFile> file, const ModelConfig& c)
    : file_(std::move(file)) {
  const bool interleaved = find_arch(*file_).rope_interleaved;
  auto add = [&](const std::string& hf, const std::string& gguf, int64_t rope_heads) {
    if (const GgufTensor* t = file_->tensor(gguf)) names_[hf] = {t, rope_heads};
  };
  add("model.embed_tokens.weight", "token_embd.weight", 0);
  add("model.norm.weight", "output_norm.weight", 0);
  add("lm_head.weight", "output.weight", 0);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string hf = "model.layers." + std::to_string(i) + ".";
    const std::string gg = "blk." + std::to_string(i) + ".";
    for (const LayerName& n : kLayerNames) {
      const int64_t heads = !interleaved  ? 0
                            : n.rope == 1 ? c.num_heads
                            : n.rope == 2 ? c.num_kv_heads
                                          : 0;
      add(hf + n.hf, gg + n.gguf, heads);
    }
  }
}

const GgufCheckpoint::Source& GgufCheckpoint::source(const std::string& name) const {
  auto it = names_.find(name);
  if (it == names_.end()) fail_file(file_->path(), "missing tensor for \"" + name + "\"");
  return it->second;
}

std::vector<int64_t> GgufCheckpoint::shape(const std::string& name) const {
  return source(name).tensor->shape;
}

// Rows of a q/k projection back in HF's order: HF row h D + j D/2 + i is the converter's row
// h D + 2 i + j.
at::Tensor GgufCheckpoint::reorder(const Source& s, const at::Tensor& t) const {
  if (s.rope_heads == 0) return t;
  const int64_t rows = t.size(0);
  if (rows % (2 * s.rope_heads) != 0) {
    fail_file(file_->path(), "tensor \"" + s.tensor->name + "\": " + std::to_string(rows) +
                                 " rows do not split into " + std::to_string(s.rope_heads) +
                                 " heads");
  }
  const int64_t d = rows / s.rope_heads, half = d / 2;
  at::Tensor idx = at::empty({rows}, at::kLong);
  int64_t* ix = idx.data_ptr<int64_t>();
  for (int64_t h = 0; h < s.rope_heads; ++h) {
    for (int64_t j = 0; j < 2; ++j) {
      for (int64_t i = 0; i < half; ++i) ix[h * d + j * half + i] = h * d + 2 * i + j;
    }
  }
  return t.index_select(0, idx);
}

std::optional<ops::QuantizedRows> GgufCheckpoint::quantized(const std::string& name) const {
  const Source& s = source(name);
  const GgufTensor& t = *s.tensor;
  if (float_type(t.type)) return std::nullopt;
  const std::optional<kernels::QuantType> q = quant_type(t.type);
  if (!q || t.shape.size() != 2) return std::nullopt;  // load() names the problem
  const int64_t row_bytes = kernels::quant_row_bytes(*q, t.shape[1]);
  std::shared_ptr<MappedFile> keep = file_->mapping();
  at::Tensor rows = at::from_blob(
      const_cast<uint8_t*>(file_->data(t)), {t.shape[0], row_bytes},
      [keep](void*) mutable { keep.reset(); }, at::TensorOptions().dtype(at::kByte));
  return ops::QuantizedRows{*q, reorder(s, rows), t.shape[1]};
}

at::Tensor GgufCheckpoint::load(const std::string& name, at::ScalarType dtype) const {
  const Source& s = source(name);
  const GgufTensor& t = *s.tensor;
  at::Tensor out;
  if (const std::optional<at::ScalarType> ft = float_type(t.type)) {
    const uint8_t* data = file_->data(t);
    at::Tensor stored = at::empty(t.shape, at::TensorOptions().dtype(*ft));
    std::memcpy(stored.data_ptr(), data, t.bytes);  // the file's alignment may be below 4 bytes
    out = stored.to(dtype);
  } else if (const std::optional<kernels::QuantType> q = quant_type(t.type);
             q && t.shape.size() == 2) {
    const int64_t row_bytes = kernels::quant_row_bytes(*q, t.shape[1]);
    const at::Tensor rows =
        at::from_blob(const_cast<uint8_t*>(file_->data(t)), {t.shape[0], row_bytes}, at::kByte);
    out = ops::dequantize_rows({*q, rows, t.shape[1]}).to(dtype);
  } else {
    fail_file(file_->path(), "tensor \"" + t.name + "\" has GGUF type " + ggml_type_name(t.type) +
                                 ", which is not supported (supported: F32, F16, BF16, and for "
                                 "2-D weights Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)");
  }
  return reorder(s, out).contiguous();
}

}  // namespace taco
