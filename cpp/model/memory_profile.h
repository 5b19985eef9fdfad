// KV cache sizing on a GPU (vLLM's gpu_memory_utilization): run one forward of the largest batch
// the scheduler may build, read the activation peak from the caching allocator, and give the KV
// cache what is left of gpu_memory_utilization * capacity after everything already on the device
// (weights, other processes) and that peak.
#pragma once

#include "core/engine_options.h"
#include "model/llama.h"
#include "model/model_runner.h"

namespace taco {

// opts must have its derived limits resolved (max_num_batched_tokens, max_model_len).
// num_gpu_blocks_override > 0 skips the profile. CPU swap blocks come from swap_space_gib.
KvCacheSize profile_gpu_kv_cache_size(const EngineOptions& opts, const LlamaModel& model);

}  // namespace taco
