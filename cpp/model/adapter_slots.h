// The adapters a model runner serves. LoRA: every added adapter is read from its PEFT directory
// once into host memory (the max_cpu_loras most recently used stay there; an evicted one is read
// again when a request needs it), and a step's adapters are copied into the model's max_loras
// device slots, least recently used slot first. Prompt adapters: their virtual-token embeddings,
// on the device in the model dtype.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/engine_options.h"
#include "core/executor.h"
#include "model/llama.h"
#include "model/peft_adapter.h"

namespace taco {

// The dtype of the LoRA slots: lora_dtype, or the model's for "auto".
at::ScalarType lora_scalar_type(const std::string& lora_dtype, at::ScalarType model_dtype);

class AdapterSlots {
 public:
  // With opts.enable_lora the model's LoRA slots must be allocated (the engine factory does it
  // before the KV cache is sized).
  AdapterSlots(LlamaModel& model, const EngineOptions& opts);

  // Reads the adapter (its kind enabled: the engine checks). Throws std::invalid_argument naming
  // the adapter (peft_adapter.h).
  AdapterInfo load(AdapterKind kind, int64_t id, const std::string& path);
  void unload(AdapterKind kind, int64_t id);

  // Puts every LoRA of `ids` (distinct, at most max_loras) into a device slot, copying the
  // missing ones in over the least recently used slots outside `ids`.
  void prepare(const std::vector<int64_t>& ids);
  // The slot of a LoRA prepare() placed.
  int32_t slot_of(int64_t id) const;
  // A prompt adapter's embeddings [num_virtual_tokens, H] on the model's device.
  const at::Tensor& prompt_embeddings(int64_t id) const;

 private:
  struct Lora {
    std::string path;
    std::shared_ptr<const LoraAdapter> host;  // null once evicted from host memory
  };
  void keep_in_host(int64_t id);

  LlamaModel& model_;
  EngineOptions opts_;
  int32_t max_cpu_loras_;
  std::unordered_map<int64_t, Lora> loras_;
  std::list<int64_t> host_lru_;      // ids with a host copy, most recently used first
  std::vector<int64_t> slot_id_;     // per device slot: the LoRA in it, 0: empty
  std::vector<uint64_t> slot_used_;  // per device slot: the prepare() that last used it
  uint64_t tick_ = 0;
  std::unordered_map<int64_t, at::Tensor> prompts_;
};

}  // namespace taco
