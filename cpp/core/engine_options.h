// Engine options: plain data shared by the Python binding, the C++ API (taco.h) and the model
// runner, defined once by the TACO_ENGINE_OPTIONS list below.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace taco {

enum class PreemptionMode : uint8_t { kRecompute, kSwap };

// One logits row handed to a caller's processors (vLLM's logits_processors): the request's key
// (SamplingOptions::logits_hook_key), its prompt and output so far, and vocab_size float logits
// to edit in place before any other processing.
struct LogitsHookCall {
  int64_t key = -1;
  const std::vector<int32_t>* prompt = nullptr;
  const std::vector<int32_t>* output = nullptr;
  float* row = nullptr;
  int32_t vocab_size = 0;
};
// Runs on the thread calling Engine::step, one row at a time in batch order. It must not throw
// (the step is half done): record the failure and report it after step() returns.
using LogitsHook = std::function<void(const LogitsHookCall&)>;

// A sequence whose next token a grammar constrains this step (SamplingOptions::guide_key): the
// request's key, the sequence's index within its request and its output so far.
struct GuideRow {
  int64_t key = -1;
  int32_t seq_index = 0;
  const std::vector<int32_t>* output = nullptr;
};
// One call per step for all guided rows: the hook writes row i's token bitmask to
// bitmask[i * words, (i + 1) * words), bit t % 32 of word t / 32 set when token t is allowed
// (words = ceil(vocab_size / 32); ids from vocab_size on must stay clear).
struct GuideHookCall {
  const GuideRow* rows = nullptr;
  int32_t num_rows = 0;
  int32_t* bitmask = nullptr;
  int32_t words = 0;
  int32_t vocab_size = 0;
};
// Same threading and error rules as LogitsHook. A failed call must leave every bit set.
using GuideHook = std::function<void(const GuideHookCall&)>;

// What the logprobs of sampled and top tokens are computed from (vLLM's logprobs_mode).
// Processed: after the logits processors, penalties, temperature and top-k / top-p / min-p
// (filtered tokens get -inf), as vLLM 0.6 reports; raw: the model's own distribution.
enum class LogprobsMode : uint8_t {
  kProcessedLogprobs,
  kRawLogprobs,
  kProcessedLogits,
  kRawLogits
};

// Drafted tokens per sequence and step at most.
inline constexpr int32_t kMaxSpeculativeTokens = 32;

// Every engine knob, with vLLM's names and defaults: X(type, name, default, ok, rule), the one
// list from which the struct, its validation, the Python properties and the C API conversion
// follow. `ok` is a predicate over the value `v`; `rule` says it in words for the error message.
#define TACO_ENGINE_OPTIONS(X)                                                                  \
  X(std::string, model, "", true, "a model directory or GGUF file")                             \
  X(std::string, quantization, "",                                                              \
    one_of(v, {"", "awq", "gptq", "fp8", "compressed-tensors", "gguf"}),                        \
    "one of '' (the checkpoint's own), 'awq', 'gptq', 'fp8', 'compressed-tensors', 'gguf'")     \
  X(std::string, dtype, "auto", one_of(v, {"auto", "float32", "bfloat16", "float16"}),          \
    "one of 'auto', 'float32', 'bfloat16', 'float16'")                                          \
  X(std::string, device, "auto", one_of(v, {"auto", "cpu", "cuda"}),                            \
    "one of 'auto', 'cpu', 'cuda'")                                                             \
  X(std::string, kv_cache_dtype, "auto", one_of(v, {"auto", "fp8", "fp8_e4m3", "fp8_e5m2"}),    \
    "one of 'auto' (the model dtype), 'fp8' (= 'fp8_e4m3'), 'fp8_e4m3', 'fp8_e5m2'")            \
  X(std::string, quantization_param_path, "", true,                                             \
    "a JSON file of KV cache scaling factors, or empty")                                        \
  X(uint64_t, seed, 0, true, "an integer")                                                      \
  /* KV cache and scheduling. */                                                                \
  X(int32_t, block_size, 16, v > 0, "a positive number of tokens")                              \
  X(int32_t, max_num_seqs, 256, v > 0, "positive")                                              \
  X(int32_t, max_num_batched_tokens, 0, v >= 0, ">= 0 (0: derived)")                            \
  X(int32_t, max_model_len, 0, v >= 0, ">= 0 (0: the model config's)")                          \
  X(bool, enable_prefix_caching, false, true, "a bool")                                         \
  X(bool, enable_chunked_prefill, false, true, "a bool")                                        \
  X(double, swap_space_gib, 4.0, v >= 0, ">= 0 GiB of CPU swap space per device")               \
  X(PreemptionMode, preemption_mode, PreemptionMode::kRecompute, true, "'recompute' or 'swap'") \
  X(int32_t, num_gpu_blocks_override, 0, v >= 0, ">= 0 (> 0 forces the KV block count)")        \
  X(double, cpu_kvcache_space_gib, 0.0, v >= 0, ">= 0 GiB (0: TACO_CPU_KVCACHE_SPACE, else 4)") \
  X(double, gpu_memory_utilization, 0.9, v > 0 && v <= 1, "in (0, 1]")                          \
  /* CUDA graphs. */                                                                            \
  X(bool, enforce_eager, false, true, "a bool")                                                 \
  X(int32_t, max_seq_len_to_capture, 8192, v > 0, "positive")                                   \
  X(int32_t, num_threads, 0, v >= 0, ">= 0 CPU threads (0: all cores)")                         \
  /* Tensor parallelism: the ranks' process group is registered by the Python frontend. */      \
  X(int32_t, tensor_parallel_size, 1, v >= 1, ">= 1")                                           \
  X(std::string, distributed_group, "", true,                                                   \
    "the registered torch.distributed group of the ranks, or empty")                            \
  X(bool, disable_custom_all_reduce, false, true, "a bool")                                     \
  X(int32_t, cuda_device, 0, v >= 0, ">= 0: the CUDA device ordinal of this rank")              \
  X(double, cpu_offload_gb, 0.0, v >= 0, ">= 0 GiB of weights kept in host memory (CUDA)")      \
  /* Adapters: LoRA weights in max_loras device slots (max_cpu_loras read ones kept in host     \
     memory, 0: max_loras), prompt adapters' virtual tokens. */                                 \
  X(bool, enable_lora, false, true, "a bool")                                                   \
  X(int32_t, max_loras, 1, v >= 1, ">= 1")                                                      \
  X(int32_t, max_lora_rank, 16, one_of_int(v, {8, 16, 32, 64, 128, 256}),                       \
    "one of 8, 16, 32, 64, 128, 256")                                                           \
  X(int32_t, max_cpu_loras, 0, v == 0 || v >= o.max_loras, ">= max_loras (0: max_loras)")       \
  X(std::string, lora_dtype, "auto", one_of(v, {"auto", "float32", "bfloat16", "float16"}),     \
    "'auto' (the model dtype), 'float32', 'bfloat16' or 'float16'")                             \
  X(bool, enable_prompt_adapter, false, true, "a bool")                                         \
  X(int32_t, max_prompt_adapters, 1, v >= 1, ">= 1")                                            \
  X(int32_t, max_prompt_adapter_token, 0, v >= 0, ">= 0 virtual tokens")                        \
  X(LogprobsMode, logprobs_mode, LogprobsMode::kProcessedLogprobs, true,                        \
    "'processed_logprobs', 'raw_logprobs', 'processed_logits' or 'raw_logits'")                 \
  /* Speculative decoding: up to num_speculative_tokens drafted tokens per decoding sequence,   \
     verified in one forward. "ngram": the latest earlier occurrence of the sequence's last     \
     ngram_prompt_lookup_max .. _min tokens; "lookahead": the engine-wide n-gram tree of every  \
     prompt and output. */                                                                      \
  X(std::string, speculative_method, "", one_of(v, {"", "ngram", "lookahead"}),                 \
    "one of '' (off), 'ngram', 'lookahead'")                                                    \
  X(int32_t, num_speculative_tokens, 0,                                                         \
    o.speculative_method.empty() ? v == 0 : v >= 1 && v <= kMaxSpeculativeTokens,               \
    "0 without speculative_method, else in [1, 32]")                                            \
  X(int32_t, ngram_prompt_lookup_max, 0,                                                        \
    o.speculative_method.empty() ? v == 0 : v >= 1 && v <= kMaxSpeculativeTokens,               \
    "0 without speculative_method, else in [1, 32]")                                            \
  X(int32_t, ngram_prompt_lookup_min, 0,                                                        \
    o.speculative_method.empty() ? v == 0 : v >= 1 && v <= o.ngram_prompt_lookup_max,           \
    "0 without speculative_method, else in [1, ngram_prompt_lookup_max]")                       \
  X(int32_t, speculative_disable_by_batch_size, 0, v >= 0,                                      \
    ">= 0 (> 0: no drafts while more requests than this are unfinished)")

struct EngineOptions {
#define TACO_OPTION_FIELD(type, name, value, ok, rule) type name = value;
  TACO_ENGINE_OPTIONS(TACO_OPTION_FIELD)
#undef TACO_OPTION_FIELD

  LogitsHook logits_hook;  // empty: requests with a logits_hook_key are rejected
  GuideHook guide_hook;    // empty: requests with a guide_key are rejected
};

// Throws std::invalid_argument naming the first option outside its rule (the list above). Every
// binding (Python, the C API) and the engine factory call it; the model-dependent limits
// (max_model_len against the config, head sizes on a device) are checked when the model loads.
void validate(const EngineOptions& opts);

// The names of the enum options, as the bindings spell them.
const char* to_string(PreemptionMode mode);
const char* to_string(LogprobsMode mode);
// Throws std::invalid_argument naming `option` and the allowed names when `name` is not one.
void parse(const std::string& name, const char* option, PreemptionMode* out);
void parse(const std::string& name, const char* option, LogprobsMode* out);

}  // namespace taco
