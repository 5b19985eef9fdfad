#include "model/memory_profile.h"

#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "ops/device_memory.h"

namespace taco {

namespace {

// Peak extra bytes of one forward over max_num_batched_tokens tokens cut into sequences of at most
// max_model_len tokens (at most max_num_seqs of them), and the logits of one row per sequence.
// K/V writes are skipped (slot -1) and attention reads one scratch block: its values are
// irrelevant, only the allocations count.
int64_t profile_activation_bytes(const EngineOptions& opts, const LlamaModel& model) {
  const ModelConfig& c = model.config();
  const at::Device device = model.device();
  const int64_t tokens = opts.max_num_batched_tokens;
  const int64_t seqs = std::clamp<int64_t>((tokens + opts.max_model_len - 1) / opts.max_model_len,
                                           1, std::max(opts.max_num_seqs, 1));
  const int64_t seq_len = (tokens + seqs - 1) / seqs;
  const int64_t max_blocks = (seq_len + opts.block_size - 1) / opts.block_size;
  const auto ints = at::TensorOptions().dtype(at::kInt).device(device);
  const auto longs = at::TensorOptions().dtype(at::kLong).device(device);

  AttentionMetadata md;
  std::vector<int32_t> starts(seqs + 1, 0), lens(seqs);
  std::vector<int64_t> positions, rows;
  for (int64_t s = 0; s < seqs; ++s) {
    lens[s] = static_cast<int32_t>(std::min(seq_len, tokens - starts[s]));
    starts[s + 1] = starts[s] + lens[s];
    for (int32_t p = 0; p < lens[s]; ++p) positions.push_back(p);
    rows.push_back(starts[s + 1] - 1);
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
  ops::synchronize(device);
  const int64_t before = ops::allocated_bytes(device);
  ops::reset_peak_memory(device);
  at::Tensor input_ids = at::zeros({tokens}, longs);
  at::Tensor hidden = model.forward(input_ids, md, scratch_kv);
  at::Tensor logits =
      model.compute_logits(hidden.index_select(0, at::tensor(rows, at::kLong).to(device)));
  ops::synchronize(device);
  return ops::peak_allocated_bytes(device) - before;
}

}  // namespace

KvCacheSize profile_gpu_kv_cache_size(const EngineOptions& opts, const LlamaModel& model) {
  const ModelConfig& c = model.config();
  const double block_bytes = 2.0 * c.num_layers * c.num_kv_heads * opts.block_size * c.head_dim *
                             static_cast<double>(at::elementSize(model.dtype()));
  KvCacheSize size;
  if (opts.block_size <= 0) throw std::invalid_argument("block_size must be positive");
  if (opts.swap_space_gib < 0) throw std::invalid_argument("swap_space must be >= 0 GiB");
  size.num_cpu_blocks = static_cast<int32_t>(
      std::min(opts.swap_space_gib * 1024.0 * 1024.0 * 1024.0 / block_bytes, 1e9));
  if (opts.num_gpu_blocks_override > 0) {
    size.num_device_blocks = opts.num_gpu_blocks_override;
    return size;
  }
  if (!(opts.gpu_memory_utilization > 0 && opts.gpu_memory_utilization <= 1)) {
    throw std::invalid_argument("gpu_memory_utilization must be in (0, 1], got " +
                                std::to_string(opts.gpu_memory_utilization));
  }
  const int64_t activations = profile_activation_bytes(opts, model);
  ops::release_cached_memory();
  const ops::DeviceMemory mem = ops::device_memory(model.device());
  // Everything on the device now (weights, CUDA context, other processes) stays; the forward's
  // peak comes back every step.
  const double in_use = static_cast<double>(mem.total_bytes - mem.free_bytes);
  const double budget =
      opts.gpu_memory_utilization * static_cast<double>(mem.total_bytes) - in_use - activations;
  size.num_device_blocks = static_cast<int32_t>(std::clamp(budget / block_bytes, 0.0, 1e9));
  return size;
}

}  // namespace taco
