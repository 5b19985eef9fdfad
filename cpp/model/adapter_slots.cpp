#include "model/adapter_slots.h"

#include <algorithm>
#include <stdexcept>

namespace taco {

at::ScalarType lora_scalar_type(const std::string& lora_dtype, at::ScalarType model_dtype) {
  if (lora_dtype == "float32") return at::kFloat;
  if (lora_dtype == "bfloat16") return at::kBFloat16;
  if (lora_dtype == "float16") return at::kHalf;
  return model_dtype;
}

AdapterSlots::AdapterSlots(LlamaModel& model, const EngineOptions& opts)
    : model_(model),
      opts_(opts),
      max_cpu_loras_(opts.max_cpu_loras > 0 ? opts.max_cpu_loras : opts.max_loras) {
  if (opts.enable_lora) {
    if (model_.lora_slots() != opts.max_loras) {
      throw std::logic_error("the model has no LoRA slots for max_loras");
    }
    slot_id_.assign(opts.max_loras, 0);
    slot_used_.assign(opts.max_loras, 0);
  }
}

AdapterInfo AdapterSlots::load(AdapterKind kind, int64_t id, const std::string& path) {
  AdapterInfo info;  // the engine adds the id, name and path
  if (kind == AdapterKind::kLora) {
    auto adapter = std::make_shared<const LoraAdapter>(
        load_lora_adapter(path, model_.config(), opts_.max_lora_rank));
    info.rank = static_cast<int32_t>(adapter->rank);
    loras_[id] = {path, std::move(adapter)};
    keep_in_host(id);
    return info;
  }
  at::Tensor e = load_prompt_adapter(path, model_.config(), opts_.max_prompt_adapter_token);
  info.num_virtual_tokens = static_cast<int32_t>(e.size(0));
  prompts_[id] = e.to(model_.dtype()).to(model_.device());
  return info;
}

void AdapterSlots::unload(AdapterKind kind, int64_t id) {
  if (kind == AdapterKind::kPromptAdapter) {
    prompts_.erase(id);
    return;
  }
  loras_.erase(id);
  host_lru_.remove(id);
  for (size_t s = 0; s < slot_id_.size(); ++s) {
    if (slot_id_[s] == id) {
      slot_id_[s] = 0;
      slot_used_[s] = 0;
    }
  }
}

// Moves id to the front of the host LRU; drops the host copies beyond max_cpu_loras.
void AdapterSlots::keep_in_host(int64_t id) {
  host_lru_.remove(id);
  host_lru_.push_front(id);
  while (static_cast<int32_t>(host_lru_.size()) > max_cpu_loras_) {
    loras_[host_lru_.back()].host.reset();
    host_lru_.pop_back();
  }
}

void AdapterSlots::prepare(const std::vector<int64_t>& ids) {
  ++tick_;
  if (ids.size() > slot_id_.size()) {
    throw std::logic_error("a step names " + std::to_string(ids.size()) + " LoRA adapters, " +
                           "more than the " + std::to_string(slot_id_.size()) + " slots");
  }
  std::vector<int64_t> missing;
  for (int64_t id : ids) {
    auto at = std::find(slot_id_.begin(), slot_id_.end(), id);
    if (at == slot_id_.end()) {
      missing.push_back(id);
    } else {
      slot_used_[at - slot_id_.begin()] = tick_;
    }
  }
  for (int64_t id : missing) {
    // The least recently used slot not in this step (empty slots have tick 0).
    size_t best = slot_id_.size();
    for (size_t s = 0; s < slot_id_.size(); ++s) {
      if (slot_used_[s] == tick_) continue;
      if (best == slot_id_.size() || slot_used_[s] < slot_used_[best]) best = s;
    }
    if (best == slot_id_.size()) throw std::logic_error("no free LoRA slot");
    auto it = loras_.find(id);
    if (it == loras_.end()) throw std::logic_error("LoRA " + std::to_string(id) + " not loaded");
    Lora& l = it->second;
    if (!l.host) {
      l.host = std::make_shared<const LoraAdapter>(
          load_lora_adapter(l.path, model_.config(), opts_.max_lora_rank));
    }
    keep_in_host(id);
    model_.set_lora_slot(static_cast<int64_t>(best), l.host.get());
    slot_id_[best] = id;
    slot_used_[best] = tick_;
  }
}

int32_t AdapterSlots::slot_of(int64_t id) const {
  auto at = std::find(slot_id_.begin(), slot_id_.end(), id);
  if (at == slot_id_.end()) throw std::logic_error("LoRA " + std::to_string(id) + " has no slot");
  return static_cast<int32_t>(at - slot_id_.begin());
}

const at::Tensor& AdapterSlots::prompt_embeddings(int64_t id) const {
  auto it = prompts_.find(id);
  if (it == prompts_.end()) {
    throw std::logic_error("prompt adapter " + std::to_string(id) + " not loaded");
  }
  return it->second;
}

}  // namespace taco
