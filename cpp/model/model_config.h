// The model facts the runner needs, read in C++ from an HF config.json (plus the eos ids of an
// optional generation_config.json), so C++ embedders load models without Python.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace taco {

// Rotary embedding frequencies, following HF's rope_init functions.
struct RopeConfig {
  double theta = 10000.0;
  std::string type = "default";  // default | linear | llama3
  double factor = 1.0;           // linear and llama3
  double low_freq_factor = 1.0;  // llama3
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 0;
  // Per-frequency divisors of the inverse frequencies (a GGUF file's rope_freqs tensor, which
  // carries Llama 3's scaling); empty when none.
  std::vector<double> freq_factors;
};

enum class ModelFamily : uint8_t { kLlama, kQwen2, kQwen3 };

// A checkpoint's quantization_config (config.json): the int4/int8 group-quantized formats AWQ
// (GEMM layout: 4-bit, zero points) and GPTQ (4 or 8 bits, symmetric or with zero points,
// act-order through g_idx), and FP8 weights ("fp8", or compressed-tensors' FP8 schemes) with a
// scale per tensor or per output channel.
struct QuantConfig {
  // "" (none), "awq", "gptq", "fp8", "compressed-tensors", "gguf" (set by the GGUF reader)
  std::string method;
  int64_t bits = 0;        // 4, or 8 (GPTQ)
  int64_t group_size = 0;  // values per scale along the input; the whole input when -1
  bool zero_point = true;  // AWQ: zero points stored (true in every GEMM checkpoint)
  bool desc_act = false;   // GPTQ act-order: groups follow g_idx, not the input order
  bool sym = true;         // GPTQ: symmetric (zero point 2^(bits-1))
};

struct ModelConfig {
  std::string architecture;  // e.g. LlamaForCausalLM
  ModelFamily family = ModelFamily::kLlama;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // q/k/v projections carry a bias (Qwen2 always; Llama attention_bias)
  bool o_bias = false;    // o_proj bias (Llama attention_bias)
  bool mlp_bias = false;  // gate/up/down biases (Llama mlp_bias)
  bool qk_norm = false;   // per-head RMSNorm of q and k before rope (Qwen3)
  RopeConfig rope;
  std::string torch_dtype;  // as written in the config, "" when absent
  std::vector<int32_t> eos_token_ids;
  // Mistral v0.1 / Qwen2 windows are not applied: attention is always full. Recorded so callers
  // can warn when max_model_len exceeds it.
  int64_t sliding_window = 0;
  QuantConfig quant;
};

// The quantization methods create_engine accepts, comma separated, for error messages.
std::string supported_quantizations();

// The architectures create_engine accepts, comma separated, for error messages.
std::string supported_architectures();

// Parses config text; `source` names the file in error messages (std::invalid_argument).
ModelConfig parse_model_config(std::string_view config_json, const std::string& source);

// Reads <dir>/config.json and merges eos ids from <dir>/generation_config.json when present.
ModelConfig load_model_config(const std::string& model_dir);

// Reads a whole (small) text file; throws std::invalid_argument naming it when unreadable.
std::string read_text_file(const std::string& path, size_t max_bytes = 64u << 20);

}  // namespace taco
