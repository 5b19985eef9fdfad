// The Executor over a Llama-family model: owns the paged KV cache (device and CPU swap), turns a
// SchedulerOutput into one flat batch, runs the forward, and samples.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <vector>

#include "core/engine_options.h"
#include "core/executor.h"
#include "model/adapter_slots.h"
#include "model/decode_graphs.h"
#include "model/llama.h"
#include "model/sampler.h"
#include "model/step_plan.h"
#include "model/tp_driver.h"
#include "ops/communicator.h"

namespace taco {

struct KvCacheSize {
  int32_t num_device_blocks = 0;
  int32_t num_cpu_blocks = 0;
};

// CPU device blocks: num_gpu_blocks_override if > 0, else cpu_kvcache_space_gib, else the env
// TACO_CPU_KVCACHE_SPACE (GiB), else 4 GiB. CPU (swap) blocks from swap_space_gib. GPUs size
// by profiling instead (memory_profile.h).
KvCacheSize kv_cache_size(const EngineOptions& opts, const ModelConfig& config,
                          at::ScalarType dtype);

// Bytes of one KV block over every layer, K and V (throws for block_size <= 0), and the CPU swap
// blocks that swap_space_gib holds (throws for a negative size): shared with memory_profile.h.
// The KV cache's element type: the model dtype, or the 8-bit float opts.kv_cache_dtype names.
at::ScalarType kv_cache_dtype(const EngineOptions& opts, at::ScalarType dtype);
double kv_block_bytes(const EngineOptions& opts, const ModelConfig& config, at::ScalarType dtype);
int32_t swap_blocks(const EngineOptions& opts, double block_bytes);

class ModelRunner : public Executor {
 public:
  // With `comm` (tensor parallelism, the model holding this rank's shard and using `comm`): rank 0
  // is the engine's executor and sends each step's plan to the other ranks, which call serve().
  ModelRunner(std::unique_ptr<LlamaModel> model, const EngineOptions& opts, KvCacheSize size,
              std::vector<int32_t> eos_token_ids,
              std::unique_ptr<ops::Communicator> comm = nullptr);
  ~ModelRunner() override;

  int32_t num_device_blocks() const override { return num_device_blocks_; }
  int32_t num_cpu_blocks() const override { return num_cpu_blocks_; }
  int32_t block_size() const override { return block_size_; }
  std::vector<SeqStepResult> execute(const SchedulerOutput& out) override;
  AdapterInfo load_adapter(AdapterKind kind, int64_t id, const std::string& path) override;
  void unload_adapter(AdapterKind kind, int64_t id) override;

  // Tensor-parallel ranks other than 0: runs rank 0's plans until it sends the stop plan. Throws
  // when a collective fails (a rank died or timed out).
  void serve();
  int tensor_parallel_rank() const { return comm_ ? comm_->rank() : 0; }

 private:
  struct Batch;
  struct DraftRows;
  // A step's adapter inputs: each token's LoRA slot (empty when no token has one) and the rows
  // that take prompt adapters' virtual-token embeddings.
  struct StepAdapters {
    std::vector<int32_t> lora_slots;
    std::vector<int64_t> embed_rows;
    at::Tensor embed_values;
    bool empty() const { return lora_slots.empty() && embed_rows.empty(); }
  };
  void prepare_adapters(const SchedulerOutput& out, StepAdapters& a);
  void check_scheduled(const ScheduledSeq& s) const;
  void build_batch(const SchedulerOutput& out, Batch& batch) const;
  void move_blocks(const StepPlan& plan);
  at::Tensor forward(const StepPlan& plan, const StepAdapters* adapters);
  at::Tensor run_plan(const StepPlan& plan, const SchedulerOutput* out = nullptr);
  static void accept_drafts(const SchedulerOutput& out, const Batch& batch,
                            const std::vector<SeqStepResult*>& res,
                            std::vector<SeqStepResult>& results);
  void fill_prompt_logprobs(const SchedulerOutput& out, const Batch& batch,
                            const at::Tensor& logits, std::vector<SeqStepResult>& results) const;

  // Host vector -> tensor on the model's device (a view of the vector on the CPU).
  at::Tensor to_device(at::Tensor host) const;

  std::unique_ptr<LlamaModel> model_;
  at::Device device_;
  int32_t block_size_;
  int32_t num_device_blocks_;
  int32_t num_cpu_blocks_;
  std::vector<at::Tensor> kv_caches_;   // per layer [2, blocks, Hkv, block_size, D]
  std::vector<at::Tensor> cpu_caches_;  // swap space, same shape with num_cpu_blocks (pinned
                                        // when the device is a GPU)
  Sampler sampler_;
  std::unique_ptr<Batch> batch_;             // reused buffers of the flat batch
  std::unique_ptr<DecodeGraphs> graphs_;     // CUDA devices unless enforce_eager
  std::unique_ptr<ops::Communicator> comm_;  // tensor parallelism (the model's shard uses it)
  std::unique_ptr<TpDriver> driver_;         // rank 0 of a tensor-parallel group
  std::unique_ptr<AdapterSlots> adapters_;   // enable_lora / enable_prompt_adapter
  StepAdapters step_adapters_;               // reused buffers
};

}  // namespace taco
