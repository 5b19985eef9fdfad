#include "model/engine_factory.h"

#include <ATen/Parallel.h>

#include <stdexcept>
#include <string>

#include "model/llama.h"
#include "model/model_config.h"
#include "model/model_runner.h"
#include "model/safetensors.h"

namespace taco {

namespace {

bool cpu_has_bf16() { return __builtin_cpu_supports("avx512bf16"); }

// "auto" is bfloat16 where the CPU computes it natively, else float32 (DESIGN.md).
at::ScalarType resolve_dtype(const std::string& dtype) {
  if (dtype == "auto") return cpu_has_bf16() ? at::kBFloat16 : at::kFloat;
  if (dtype == "float32" || dtype == "float") return at::kFloat;
  if (dtype == "bfloat16") return at::kBFloat16;
  if (dtype == "float16" || dtype == "half") return at::kHalf;
  throw std::invalid_argument("dtype \"" + dtype +
                              "\" is not supported (auto, float32, bfloat16, float16)");
}

std::string dtype_name(at::ScalarType t) {
  if (t == at::kBFloat16) return "bfloat16";
  if (t == at::kHalf) return "float16";
  return "float32";
}

std::string resolve_device(const std::string& device) {
  if (device == "auto" || device == "cpu") return "cpu";
  if (device == "cuda") {
    throw std::invalid_argument("device \"cuda\" is not supported yet by this build (use cpu)");
  }
  throw std::invalid_argument("device \"" + device + "\" is not supported (auto, cpu, cuda)");
}

// Fills the derived limits of opts (max_model_len, max_num_batched_tokens) and checks them.
void resolve_limits(EngineOptions& opts, const ModelConfig& c) {
  if (opts.max_model_len < 0) throw std::invalid_argument("max_model_len must be >= 0");
  if (opts.max_model_len == 0) {
    opts.max_model_len = static_cast<int32_t>(c.max_position_embeddings);
  } else if (opts.max_model_len > c.max_position_embeddings) {
    throw std::invalid_argument("max_model_len " + std::to_string(opts.max_model_len) +
                                " exceeds the model's max_position_embeddings " +
                                std::to_string(c.max_position_embeddings));
  }
  if (opts.max_num_seqs <= 0) throw std::invalid_argument("max_num_seqs must be positive");
  if (opts.max_num_batched_tokens < 0) {
    throw std::invalid_argument("max_num_batched_tokens must be >= 0");
  }
  if (opts.max_num_batched_tokens == 0) {
    opts.max_num_batched_tokens =
        opts.enable_chunked_prefill ? 2048 : std::max(opts.max_model_len, 2048);
  } else if (!opts.enable_chunked_prefill && opts.max_num_batched_tokens < opts.max_model_len) {
    throw std::invalid_argument(
        "max_num_batched_tokens " + std::to_string(opts.max_num_batched_tokens) +
        " is smaller than max_model_len " + std::to_string(opts.max_model_len) +
        " without chunked prefill: long prompts could never be scheduled");
  }
}

}  // namespace

std::unique_ptr<Engine> create_engine(const EngineOptions& options, ModelInfo* info) {
  EngineOptions opts = options;
  if (opts.model.empty()) throw std::invalid_argument("model: no model directory given");
  const std::string device = resolve_device(opts.device);
  const at::ScalarType dtype = resolve_dtype(opts.dtype);
  ModelConfig config = load_model_config(opts.model);
  resolve_limits(opts, config);
  if (opts.num_threads > 0) at::set_num_threads(opts.num_threads);

  const KvCacheSize size = kv_cache_size(opts, config, dtype);
  auto model = std::make_unique<LlamaModel>(config, WeightStore::open_dir(opts.model), dtype,
                                            opts.max_model_len);
  auto runner = std::make_unique<ModelRunner>(std::move(model), opts, size, config.eos_token_ids);
  if (info != nullptr) {
    info->vocab_size = static_cast<int32_t>(config.vocab_size);
    info->max_model_len = opts.max_model_len;
    info->eos_token_ids = config.eos_token_ids;
    info->dtype = dtype_name(dtype);
    info->device = device;
    info->architecture = config.architecture;
    info->num_device_blocks = runner->num_device_blocks();
    info->num_cpu_blocks = runner->num_cpu_blocks();
  }
  return std::make_unique<Engine>(opts, std::move(runner), static_cast<int32_t>(config.vocab_size),
                                  config.eos_token_ids, opts.max_model_len);
}

}  // namespace taco
