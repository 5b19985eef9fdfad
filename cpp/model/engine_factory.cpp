#include "model/engine_factory.h"

#include <ATen/Parallel.h>
#include <c10/core/DeviceGuard.h>

#include <optional>
#include <stdexcept>
#include <string>

#include "model/adapter_slots.h"
#include "model/fp8_checkpoint.h"
#include "model/gguf_checkpoint.h"
#include "model/group_quant.h"
#include "model/kv_scales.h"
#include "model/llama.h"
#include "model/memory_profile.h"
#include "model/model_config.h"
#include "model/model_runner.h"
#include "model/safetensors.h"
#include "model/tensor_parallel.h"
#include "ops/communicator.h"
#include "ops/cuda_all_reduce.h"
#include "ops/device_memory.h"
#include "ops/shm_communicator.h"

namespace taco {

namespace {

bool cpu_has_bf16() { return __builtin_cpu_supports("avx512bf16"); }

// "auto": on a GPU the config's torch_dtype, float32 served as float16 (vLLM's rule); on the CPU
// bfloat16 where it computes it natively, else float32 (docs/architecture.md).
at::ScalarType resolve_dtype(const std::string& dtype, const at::Device& device,
                             const ModelConfig& config) {
  if (dtype == "auto" && device.is_cuda()) {
    return config.torch_dtype == "bfloat16" ? at::kBFloat16 : at::kHalf;
  }
  if (dtype == "auto") return cpu_has_bf16() ? at::kBFloat16 : at::kFloat;
  if (dtype == "float32" || dtype == "float") return at::kFloat;
  if (dtype == "bfloat16") return at::kBFloat16;
  if (dtype == "float16" || dtype == "half") return at::kHalf;
  throw std::invalid_argument("dtype \"" + dtype +
                              "\" is not supported (auto, float32, bfloat16, float16)");
}

std::string dtype_name(at::ScalarType t) {
  if (t == at::kBFloat16) return "bfloat16";
  if (t == at::kHalf) return "float16";
  return "float32";
}

// "auto" is the first GPU when this build has the CUDA backend, sees one and its attention
// kernels take the model's head size, else the CPU.
at::Device resolve_device(const std::string& device, const ModelConfig& config, int index) {
  const at::Device cuda(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  if (device == "cpu") return at::kCPU;
  const bool head_dim_ok = ops::cuda_head_dim_supported(config.head_dim);
  if (device == "auto") {
    return ops::cuda_available() && head_dim_ok ? cuda : at::Device(at::kCPU);
  }
  if (device == "cuda") {
    if (!ops::cuda_available()) {
      throw std::invalid_argument(
          "device \"cuda\": this build has no CUDA backend or sees no CUDA device of compute "
          "capability 8.0 or newer (use cpu)");
    }
    if (!head_dim_ok) {
      throw std::invalid_argument("device \"cuda\": the model's head_dim " +
                                  std::to_string(config.head_dim) +
                                  " is not one the CUDA attention kernels take (64, 96, 128, "
                                  "256); use device=\"cpu\"");
    }
    return cuda;
  }
  throw std::invalid_argument("device \"" + device + "\" is not supported (auto, cpu, cuda)");
}

// Fills the derived limits of opts (max_model_len, max_num_batched_tokens) and checks them
// against the model; validate() has checked each option on its own.
void resolve_limits(EngineOptions& opts, const ModelConfig& c) {
  if (opts.max_model_len == 0) {
    opts.max_model_len = static_cast<int32_t>(c.max_position_embeddings);
  } else if (opts.max_model_len > c.max_position_embeddings) {
    throw std::invalid_argument("max_model_len " + std::to_string(opts.max_model_len) +
                                " exceeds the model's max_position_embeddings " +
                                std::to_string(c.max_position_embeddings));
  }
  if (opts.max_num_batched_tokens == 0) {
    opts.max_num_batched_tokens =
        opts.enable_chunked_prefill ? 2048 : std::max(opts.max_model_len, 2048);
  } else if (!opts.enable_chunked_prefill && opts.max_num_batched_tokens < opts.max_model_len) {
    throw std::invalid_argument(
        "max_num_batched_tokens " + std::to_string(opts.max_num_batched_tokens) +
        " is smaller than max_model_len " + std::to_string(opts.max_model_len) +
        " without chunked prefill: long prompts could never be scheduled");
  }
}

// The quantization option, when given, must be the checkpoint's own method (vLLM's rule for
// pre-quantized checkpoints); "fp8" also quantizes a float checkpoint at load.
void check_quantization(const std::string& asked, const std::string& stored) {
  if (asked.empty() || asked == stored) return;
  if (asked == "fp8" && stored.empty()) return;
  if (stored.empty()) {
    throw std::invalid_argument("quantization \"" + asked +
                                "\": the checkpoint is not quantized (it has no "
                                "quantization_config)");
  }
  throw std::invalid_argument("quantization \"" + asked +
                              "\" contradicts the checkpoint, which is " + stored + "-quantized");
}

}  // namespace

bool cuda_device_available() { return ops::cuda_available(); }

namespace {

// What create_engine and a tensor-parallel worker share: the options resolved against the model,
// and this rank's runner.
struct Built {
  EngineOptions opts;
  ModelConfig config;  // the whole model's
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
  std::unique_ptr<ModelRunner> runner;
};

// The ranks' communicator when tensor_parallel_size > 1 (null otherwise).
std::unique_ptr<ops::Communicator> tensor_parallel_group(const EngineOptions& opts,
                                                         const at::Device& device) {
  if (opts.tensor_parallel_size == 1) return nullptr;
  if (opts.distributed_group.empty()) {
    throw std::invalid_argument(
        "tensor_parallel_size " + std::to_string(opts.tensor_parallel_size) +
        " needs the ranks' process group (distributed_group); the Python LLM starts the ranks "
        "and creates it");
  }
  auto comm = ops::resolve_communicator(opts.distributed_group, opts.tensor_parallel_size);
  // Our own collectives unless told not to: for CUDA tensors the IPC all-reduce, for CPU ones
  // (the CPU model, and the step plans everywhere) shared memory, between ranks of one machine.
  if (opts.disable_custom_all_reduce) return comm;
  if (device.is_cuda()) comm = ops::with_cuda_ipc(std::move(comm), device.index());
  return ops::with_shared_memory(std::move(comm), opts.distributed_group);
}

Built build(const EngineOptions& options) {
  Built b;
  EngineOptions& opts = b.opts;
  opts = options;
  validate(opts);
  if (opts.model.empty()) throw std::invalid_argument("model: no model directory given");
  if (opts.enable_prompt_adapter && opts.max_prompt_adapter_token <= 0) {
    throw std::invalid_argument(
        "enable_prompt_adapter needs max_prompt_adapter_token > 0 (the most virtual tokens an "
        "adapter may have)");
  }
  // A GGUF file, or an HF directory with config.json and safetensors.
  std::shared_ptr<const GgufFile> gguf;
  if (is_gguf_file(opts.model)) gguf = std::make_shared<const GgufFile>(opts.model);
  b.config = gguf ? gguf_model_config(*gguf) : load_model_config(opts.model);
  const ModelConfig& config = b.config;
  check_quantization(opts.quantization, gguf ? "gguf" : config.quant.method);
  const at::Device device = resolve_device(opts.device, config, opts.cuda_device);
  b.device = device;
  std::optional<c10::DeviceGuard> device_guard;
  if (device.is_cuda()) device_guard.emplace(device);
  std::unique_ptr<ops::Communicator> comm = tensor_parallel_group(opts, device);
  std::optional<TensorParallel> tp;
  if (comm) {
    tp = plan_tensor_parallel(config, comm->rank(), comm->world_size());
    tp->comm = comm.get();
  }
  const at::ScalarType dtype = resolve_dtype(opts.dtype, device, config);
  b.dtype = dtype;
  if (opts.kv_cache_dtype != "auto" && !device.is_cpu()) {
    throw std::invalid_argument("kv_cache_dtype \"" + opts.kv_cache_dtype +
                                "\": 8-bit KV caches are built for the CPU only (use 'auto' on "
                                "CUDA)");
  }
  resolve_limits(opts, config);
  if (opts.num_threads > 0) at::set_num_threads(opts.num_threads);

  KvCacheSize size;
  if (device.is_cpu()) size = kv_cache_size(opts, tp ? local_config(config, *tp) : config, dtype);
  const int64_t initial_free = device.is_cpu() ? 0 : ops::device_memory(device).free_bytes;
  std::unique_ptr<Checkpoint> weights;
  if (gguf) {
    weights = std::make_unique<GgufCheckpoint>(gguf, config);
  } else if (opts.quantization == "fp8" || config.quant.method == "fp8" ||
             config.quant.method == "compressed-tensors") {
    weights = std::make_unique<Fp8Checkpoint>(WeightStore::open_dir(opts.model),
                                              config.quant.method.empty());
  } else if (!config.quant.method.empty()) {
    weights =
        std::make_unique<GroupQuantCheckpoint>(WeightStore::open_dir(opts.model), config.quant);
  } else {
    weights = std::make_unique<WeightStore>(WeightStore::open_dir(opts.model));
  }
  // cpu_offload_gb: on a GPU that many GiB of decoder weights stay in host memory; on the CPU
  // the weights are in host memory already and the option changes nothing.
  const double offload = device.is_cpu() ? 0.0 : opts.cpu_offload_gb * (1024.0 * 1024.0 * 1024.0);
  auto model = std::make_unique<LlamaModel>(config, *weights, dtype, opts.max_model_len, device,
                                            tp ? &*tp : nullptr, offload);
  // vLLM applies the file's scales to 8-bit caches only (and warns otherwise).
  if (!opts.quantization_param_path.empty() && opts.kv_cache_dtype != "auto") {
    model->set_kv_cache_scales(
        read_kv_cache_scales(opts.quantization_param_path, config.num_layers));
  }
  // LoRA slots before the KV cache takes what memory is left.
  if (opts.enable_lora) {
    model->allocate_lora_slots(opts.max_loras, opts.max_lora_rank,
                               lora_scalar_type(opts.lora_dtype, dtype));
  }
  // Every rank profiles the same step (its collectives included).
  if (!device.is_cpu()) size = profile_gpu_kv_cache_size(opts, *model, initial_free);
  if (comm) {
    // All ranks take the smallest count; this is also the barrier at which rank 0 learns that
    // every rank has loaded its shard (or that one failed: its connections are closed).
    at::Tensor blocks = at::tensor({int64_t{size.num_device_blocks}}, at::kLong);
    comm->all_reduce_min(blocks);
    size.num_device_blocks = static_cast<int32_t>(blocks.item<int64_t>());
  }
  b.runner = std::make_unique<ModelRunner>(std::move(model), opts, size, config.eos_token_ids,
                                           std::move(comm));
  return b;
}

}  // namespace

std::unique_ptr<Engine> create_engine(const EngineOptions& options, ModelInfo* info) {
  Built b = build(options);
  if (b.opts.tensor_parallel_size > 1 && b.runner->tensor_parallel_rank() != 0) {
    throw std::invalid_argument(
        "create_engine runs on tensor-parallel rank 0; other ranks call "
        "run_tensor_parallel_worker");
  }
  const ModelConfig& config = b.config;
  if (info != nullptr) {
    info->vocab_size = static_cast<int32_t>(config.vocab_size);
    info->max_model_len = b.opts.max_model_len;
    info->eos_token_ids = config.eos_token_ids;
    info->dtype = dtype_name(b.dtype);
    info->device = b.device.is_cpu() ? "cpu" : "cuda";
    info->architecture = config.architecture;
    info->num_device_blocks = b.runner->num_device_blocks();
    info->num_cpu_blocks = b.runner->num_cpu_blocks();
  }
  return std::make_unique<Engine>(b.opts, std::move(b.runner),
                                  static_cast<int32_t>(config.vocab_size), config.eos_token_ids,
                                  b.opts.max_model_len);
}

std::string check_tensor_parallel(const EngineOptions& options) {
  EngineOptions opts = options;
  validate(opts);
  if (opts.model.empty()) throw std::invalid_argument("model: no model directory given");
  const ModelConfig config = is_gguf_file(opts.model) ? gguf_model_config(GgufFile(opts.model))
                                                      : load_model_config(opts.model);
  plan_tensor_parallel(config, 0, opts.tensor_parallel_size);
  return resolve_device(opts.device, config, opts.cuda_device).is_cpu() ? "cpu" : "cuda";
}

void run_tensor_parallel_worker(const EngineOptions& options) {
  if (options.tensor_parallel_size < 2) {
    throw std::invalid_argument("run_tensor_parallel_worker needs tensor_parallel_size > 1");
  }
  Built b = build(options);
  if (b.runner->tensor_parallel_rank() == 0) {
    throw std::invalid_argument(
        "rank 0 of a tensor-parallel group runs the engine "
        "(create_engine), not a worker");
  }
  b.runner->serve();
}

}  // namespace taco
