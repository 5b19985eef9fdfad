// Every engine knob, with vLLM's names and defaults. Plain data shared by the Python binding,
// the C++ API (taco.h) and the model runner.
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

// What the logprobs of sampled and top tokens are computed from (vLLM's logprobs_mode).
// Processed: after the logits processors, penalties, temperature and top-k / top-p / min-p
// (filtered tokens get -inf), as vLLM 0.6 reports; raw: the model's own distribution.
enum class LogprobsMode : uint8_t { kProcessedLogprobs, kRawLogprobs, kProcessedLogits, kRawLogits };

struct EngineOptions {
  std::string model;     // HF-format directory: config.json + *.safetensors
  std::string dtype = "auto";   // auto | float32 | bfloat16 | float16
  std::string device = "auto";  // auto | cpu | cuda
  uint64_t seed = 0;

  // KV cache and scheduling.
  int32_t block_size = 16;
  int32_t max_num_seqs = 256;
  int32_t max_num_batched_tokens = 0;  // 0: derived (see resolve in engine_factory)
  int32_t max_model_len = 0;           // 0: from the model config
  bool enable_prefix_caching = false;
  bool enable_chunked_prefill = false;
  double swap_space_gib = 4.0;         // CPU swap space per device
  PreemptionMode preemption_mode = PreemptionMode::kRecompute;
  int32_t num_gpu_blocks_override = 0;  // > 0 forces the KV block count on any device
  double cpu_kvcache_space_gib = 0.0;   // 0: TACO_CPU_KVCACHE_SPACE, else 4 GiB
  double gpu_memory_utilization = 0.9;

  // CUDA graphs.
  bool enforce_eager = false;
  int32_t max_seq_len_to_capture = 8192;

  int32_t num_threads = 0;  // CPU intra-op threads, 0: all cores

  LogprobsMode logprobs_mode = LogprobsMode::kProcessedLogprobs;

  LogitsHook logits_hook;  // empty: requests with a logits_hook_key are rejected
};

}  // namespace taco
