// KV cache scaling factors from vLLM's quantization_param_path JSON (the schema its FP8 KV-cache
// tooling writes): {"model_type": ..., "kv_cache": {"dtype": "float8_e4m3fn", "scaling_factor":
// {"<tp rank>": {"<layer>": scale, ...}}}}. One scale per layer serves both K and V.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace taco {

// The scale of every layer 0 .. num_layers - 1 for tensor-parallel rank 0. Throws
// std::invalid_argument naming the file and what is wrong: unreadable or malformed JSON, a dtype
// other than float8_e4m3fn, a missing layer, a scale that is not a positive finite number.
std::vector<double> read_kv_cache_scales(const std::string& path, int64_t num_layers);

}  // namespace taco
