// KV cache sizing on a GPU (vLLM 0.6's gpu_memory_utilization): run one forward of the most tokens
// a step may hold, see how much device memory this engine took since it began (weights, the
// forward's reserved peak, workspaces), and give the KV cache what is left of
// gpu_memory_utilization x capacity.
#pragma once

#include "core/engine_options.h"
#include "model/llama.h"
#include "model/model_runner.h"

namespace taco {

// opts must have its derived limits resolved (max_num_batched_tokens, max_model_len);
// initial_free_bytes is the device's free memory before the weights were loaded.
// num_gpu_blocks_override > 0 skips the profile. CPU swap blocks come from swap_space_gib.
// Throws CapacityError when the cache would not hold one max_model_len sequence.
KvCacheSize profile_gpu_kv_cache_size(const EngineOptions& opts, const LlamaModel& model,
                                      int64_t initial_free_bytes);

}  // namespace taco
