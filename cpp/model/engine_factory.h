// Builds a ready engine from EngineOptions: reads config.json, loads weights, picks device and
// dtype, sizes the KV cache, and wires the model runner into the core Engine.
#pragma once

#include <memory>

#include "core/engine.h"

namespace taco {

// Facts about the loaded model that callers (the Python LLM, taco.h) need.
struct ModelInfo {
  int32_t vocab_size = 0;
  int32_t max_model_len = 0;
  std::vector<int32_t> eos_token_ids;
  std::string dtype;   // resolved: float32 | bfloat16 | float16
  std::string device;  // resolved: cpu | cuda
  std::string architecture;
  int32_t num_device_blocks = 0;
  int32_t num_cpu_blocks = 0;
};

// Throws std::invalid_argument for bad options or model files (the message names the file or
// option), taco::CapacityError (a std::runtime_error) when the KV cache cannot hold one
// max_model_len sequence.
std::unique_ptr<Engine> create_engine(const EngineOptions& opts, ModelInfo* info);

// Throws std::invalid_argument when the model (config only; no weights are read) cannot be
// split in options.tensor_parallel_size ranks: checked before any rank starts. Returns the
// device the ranks will run on ("cpu" or "cuda", as create_engine resolves options.device).
std::string check_tensor_parallel(const EngineOptions& options);

// Tensor-parallel ranks 1 .. size-1 (options.distributed_group names the ranks' process group):
// loads this rank's shard, then runs rank 0's steps until its engine is destroyed. Throws when
// the options or the model are bad (as create_engine) or a collective fails.
void run_tensor_parallel_worker(const EngineOptions& options);

// True when this build has the CUDA backend and sees a CUDA device of compute capability 8.0 or
// newer (device "cuda" works).
bool cuda_device_available();

}  // namespace taco
