// Adapters in PEFT's directory format (adapter_config.json + adapter_model.safetensors): LoRA
// (low-rank updates of the attention and MLP projections) and prompt tuning (virtual-token
// embeddings placed before the prompt). Directories are untrusted: every key, name and shape is
// checked against the model, and each error names the directory and the problem.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "model/model_config.h"

namespace taco {

// The projections a LoRA may target, in the order the fused weights stack them.
enum class LoraTarget : int { kQ, kK, kV, kO, kGate, kUp, kDown };
constexpr int kNumLoraTargets = 7;
const char* lora_target_name(LoraTarget t);  // "q_proj", ...

struct LoraModule {
  at::Tensor a;  // [r, in] float32
  at::Tensor b;  // [out, r] float32, the scaling (lora_alpha / r, or / sqrt(r)) folded in
};

struct LoraAdapter {
  std::string path;
  int64_t rank = 0;  // the largest module rank
  // modules[layer][target]: undefined tensors where the adapter leaves the projection alone.
  std::vector<std::array<LoraModule, kNumLoraTargets>> modules;
  int64_t bytes() const;
};

// Reads a PEFT LoRA directory for a model of config `c` (the whole model, not a tensor-parallel
// shard). Throws std::invalid_argument naming the adapter: a missing or unreadable directory, a
// config that is not LoRA or uses what is not built (DoRA, bias terms, alpha_pattern,
// modules_to_save), a tensor of a module the model lacks, a shape the model does not imply, or
// a rank above max_rank.
LoraAdapter load_lora_adapter(const std::string& dir, const ModelConfig& c, int64_t max_rank);

// A PEFT prompt-tuning directory: prompt_embeddings [num_virtual_tokens, hidden_size] float32.
// Throws std::invalid_argument naming the adapter: not PROMPT_TUNING, a token dimension other
// than the model's hidden size, or more than max_tokens virtual tokens.
at::Tensor load_prompt_adapter(const std::string& dir, const ModelConfig& c, int64_t max_tokens);

}  // namespace taco
