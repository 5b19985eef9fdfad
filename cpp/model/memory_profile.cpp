#include "model/memory_profile.h"

#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "core/engine.h"
#include "ops/device_memory.h"

namespace taco {

namespace {

// One forward over the most tokens a step may hold (max_num_batched_tokens, cut into sequences of
// at most max_model_len tokens, at most max_num_seqs of them), then the logits of up to
// max_num_seqs rows, as a decode step of max_num_seqs sequences has them (times 1 +
// num_speculative_tokens: a verification step takes logits after every drafted token). K/V writes
// are skipped (slot -1) and attention reads one scratch block: the values are irrelevant, only the
// memory the caching allocator reserves for them counts (it keeps it reserved afterwards).
void profile_forward(const EngineOptions& opts, const LlamaModel& model) {
  const ModelConfig& c = model.config();
  const at::Device device = model.device();
  const int64_t tokens = std::min<int64_t>(opts.max_num_batched_tokens,
                                           int64_t{opts.max_num_seqs} * opts.max_model_len);
  const int64_t seqs = std::clamp<int64_t>((tokens + opts.max_model_len - 1) / opts.max_model_len,
                                           1, std::max(opts.max_num_seqs, 1));
  const int64_t seq_len = (tokens + seqs - 1) / seqs;
  const int64_t max_blocks = (seq_len + opts.block_size - 1) / opts.block_size;
  const auto ints = at::TensorOptions().dtype(at::kInt).device(device);
  const auto longs = at::TensorOptions().dtype(at::kLong).device(device);

  AttentionMetadata md;
  std::vector<int32_t> starts(seqs + 1, 0), lens(seqs);
  std::vector<int64_t> positions;
  for (int64_t s = 0; s < seqs; ++s) {
    lens[s] = static_cast<int32_t>(std::min(seq_len, tokens - starts[s]));
    starts[s + 1] = starts[s] + lens[s];
    for (int32_t p = 0; p < lens[s]; ++p) positions.push_back(p);
  }
  md.query_start_loc = at::tensor(starts, at::kInt).to(device);
  md.seq_lens = at::tensor(lens, at::kInt).to(device);
  md.block_table = at::zeros({seqs, max_blocks}, ints);
  md.slot_mapping = at::full({tokens}, -1, longs);
  md.positions = at::tensor(positions, at::kLong).to(device);
  md.max_query_len = seq_len;
  md.max_seq_len = seq_len;
  std::vector<at::Tensor> scratch_kv;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    scratch_kv.push_back(at::zeros({2, 1, c.num_kv_heads, opts.block_size, c.head_dim},
                                   at::TensorOptions().dtype(model.dtype()).device(device)));
  }

  c10::InferenceMode guard;
  at::Tensor input_ids = at::zeros({tokens}, longs);
  at::Tensor hidden = model.forward(input_ids, md, scratch_kv);
  const int64_t rows = std::min<int64_t>(
      tokens, int64_t{opts.max_num_seqs} * (1 + int64_t{opts.num_speculative_tokens}));
  at::Tensor logits = model.compute_logits(hidden.narrow(0, 0, rows));
  ops::synchronize(device);
}

}  // namespace

KvCacheSize profile_gpu_kv_cache_size(const EngineOptions& opts, const LlamaModel& model,
                                      int64_t initial_free_bytes) {
  const double block_bytes = kv_block_bytes(opts, model.config(), model.dtype());
  KvCacheSize size;
  size.num_cpu_blocks = swap_blocks(opts, block_bytes);
  if (opts.num_gpu_blocks_override > 0) {
    size.num_device_blocks = opts.num_gpu_blocks_override;
    return size;
  }
  // As vLLM 0.6: this engine's own use (weights, the forward's reserved peak, library
  // workspaces) is what left the device since create_engine began; the KV cache gets the rest
  // of gpu_memory_utilization x capacity. Other processes' memory is theirs to budget.
  profile_forward(opts, model);
  const ops::DeviceMemory mem = ops::device_memory(model.device());
  ops::release_cached_memory();
  const double used = static_cast<double>(initial_free_bytes - mem.free_bytes);
  const double budget = opts.gpu_memory_utilization * static_cast<double>(mem.total_bytes) - used;
  size.num_device_blocks = static_cast<int32_t>(std::clamp(budget / block_bytes, 0.0, 1e9));
  if (int64_t{size.num_device_blocks} * opts.block_size < opts.max_model_len) {
    constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
    throw CapacityError(
        "gpu_memory_utilization " + std::to_string(opts.gpu_memory_utilization) + " of " +
        std::to_string(mem.total_bytes / kGiB) + " GiB leaves " +
        std::to_string(std::max(budget, 0.0) / kGiB) + " GiB for the KV cache after " +
        std::to_string(used / kGiB) +
        " GiB of weights and activations: " + std::to_string(size.num_device_blocks) +
        " blocks, fewer tokens than max_model_len " + std::to_string(opts.max_model_len) +
        "; raise gpu_memory_utilization or lower max_model_len");
  }
  return size;
}

}  // namespace taco
