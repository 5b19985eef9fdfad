// The Llama-family decoder: Llama 1/2/3 (and SmolLM2, TinyLlama), Mistral, Qwen2 and Qwen3.
// They share weight names and structure; their differences are config flags (ModelConfig):
// Qwen2 has q/k/v biases, Qwen3 RMS-normalizes each q/k head before rope, Llama may carry
// attention/MLP biases and llama3 rope scaling.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <vector>

#include "model/checkpoint.h"
#include "model/layers.h"
#include "model/model_config.h"
#include "model/peft_adapter.h"
#include "model/tensor_parallel.h"
#include "model/weight_offload.h"

namespace taco {

class LlamaModel {
 public:
  // Loads and converts every weight to `dtype` on `device`; shapes are checked against the config
  // and a mismatch names the tensor. Linear weights stored block-quantized stay quantized on the
  // CPU (ops::prepare_quant_linear_weight); the embedding is dequantized. The rope cache covers
  // positions [0, max_positions). With `tp` (size > 1) the model holds that rank's shard
  // (tensor_parallel.h): config() is then the local one (heads, KV heads, MLP width; the
  // vocabulary stays whole), and forward / compute_logits run the collectives of every rank.
  // With offload_bytes > 0 the weights of the first decoder layers, up to that many bytes, stay
  // in host memory and are copied in as their layer runs (weight_offload.h).
  LlamaModel(const ModelConfig& config, const Checkpoint& weights, at::ScalarType dtype,
             int64_t max_positions, const at::Device& device = at::kCPU,
             const TensorParallel* tp = nullptr, double offload_bytes = 0);
  ~LlamaModel();

  // input_ids [T] int64 -> final-normed hidden states [T, H]; writes K/V of every layer into
  // kv_caches[layer] = [2, num_blocks, Hkv, block_size, D]. Rows embed_rows [K] int64 take
  // embed_values [K, H] (prompt adapters' virtual tokens) instead of their token's embedding;
  // md.lora_slots picks each token's LoRA slot.
  at::Tensor forward(const at::Tensor& input_ids, const AttentionMetadata& md,
                     std::vector<at::Tensor>& kv_caches, const at::Tensor& embed_rows = {},
                     const at::Tensor& embed_values = {}) const;

  // LoRA: gives every projection num_slots zeroed adapter slots of rank max_rank in dtype.
  void allocate_lora_slots(int64_t num_slots, int64_t max_rank, at::ScalarType dtype);
  // Copies the adapter's weights into slot (zeros for the projections it leaves alone, or for
  // every projection when adapter is null).
  void set_lora_slot(int64_t slot, const LoraAdapter* adapter);
  int64_t lora_slots() const { return lora_slots_; }

  // hidden [N, H] -> logits [N, V] float32 (the projection runs in the model dtype, as HF's).
  // Every rank gets the whole rows.
  at::Tensor compute_logits(const at::Tensor& hidden) const;

  // 8-bit KV caches: layer l stores K / scales[l] and V / scales[l] (quantization_param_path),
  // replacing the checkpoint's scales. One scale per layer.
  void set_kv_cache_scales(const std::vector<double>& scales);

  const ModelConfig& config() const { return config_; }
  // Decoder layers whose weights live in host memory (cpu_offload_gb), and their bytes.
  int64_t offloaded_layers() const;
  int64_t offloaded_bytes() const;
  at::ScalarType dtype() const { return dtype_; }
  const at::Device& device() const { return device_; }

 private:
  struct Layer {
    at::Tensor input_norm;  // [H]
    at::Tensor post_norm;   // [H]
    AttentionWeights attn;
    MlpWeights mlp;
  };

  at::Tensor embed(const at::Tensor& input_ids) const;
  struct LoraParts;  // a projection's LoRA parts (llama.cpp)
  std::vector<LoraParts> lora_parts(Layer& l) const;
  static std::vector<at::Tensor*> tensors_of(Layer& l);

  ModelConfig config_;
  TensorParallel tp_;
  at::ScalarType dtype_;
  at::Device device_;
  AttentionShape attn_shape_;
  at::Tensor embed_;           // [V, H] (this rank's vocabulary rows)
  ops::LinearWeight lm_head_;  // [V, H], the embedding itself when tied
  at::Tensor norm_;            // [H]
  at::Tensor rope_cache_;
  std::vector<Layer> layers_;
  std::unique_ptr<WeightOffload> offload_;
  int64_t lora_slots_ = 0;
};

}  // namespace taco
