// Tensor parallelism: which part of each weight a rank holds, and the checkpoint view that serves
// exactly that part under the HF names, so the model builder loads a shard as it loads a whole
// model. The split is Megatron's, as vLLM does it:
// - attention: each rank owns num_heads / size query heads; KV heads are split the same way, or,
//   when there are fewer KV heads than ranks, each rank holds the one KV head its query heads
//   use (replicated across size / num_kv_heads ranks). q/k/v rows and o_proj columns follow.
// - MLP: gate/up rows and down_proj columns split in intermediate_size / size slices.
// - embedding and LM head: the vocabulary in size contiguous slices of ceil(V / size) rows (the
//   last may be shorter); the embedding lookup is masked and summed, the logits gathered.
// Row-parallel outputs (o_proj, down_proj) and the embedding are partial sums, all-reduced by
// the model; their biases are added once, after the reduction.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "model/checkpoint.h"
#include "model/model_config.h"

namespace taco {

namespace ops {
class Communicator;
}

struct TensorParallel {
  int rank = 0;
  int size = 1;
  ops::Communicator* comm = nullptr;            // set when size > 1
  int64_t q_head_start = 0, num_heads = 0;      // this rank's query heads
  int64_t kv_head_start = 0, num_kv_heads = 0;  // its KV heads
  int64_t inter_start = 0, intermediate = 0;    // its MLP columns
  int64_t vocab_start = 0, vocab_rows = 0;      // its vocabulary rows (at least one)
  int64_t vocab_per_rank = 0;                   // ceil(V / size): the gathered logits' stride
};

// Throws std::invalid_argument when the model cannot be split in `size` (heads, KV heads or the
// MLP width not divisible, a vocabulary too small for a slice per rank), naming the count and the
// size.
TensorParallel plan_tensor_parallel(const ModelConfig& c, int rank, int size);

// The config a rank's model is built from: its local head and MLP counts (vocab_size stays the
// model's).
ModelConfig local_config(const ModelConfig& c, const TensorParallel& tp);

// Serves the rank's slices of `base`. Block-quantized and FP8 weights keep their stored form
// when the cut falls on a block boundary (rows always do); otherwise they load dequantized.
class ShardedCheckpoint : public Checkpoint {
 public:
  ShardedCheckpoint(const Checkpoint& base, const ModelConfig& c, const TensorParallel& tp);

  bool has(const std::string& name) const override { return base_.has(name); }
  std::vector<int64_t> shape(const std::string& name) const override;
  at::Tensor load(const std::string& name, at::ScalarType dtype) const override;
  std::optional<ops::QuantizedRows> quantized(const std::string& name) const override;
  std::optional<ops::Fp8Rows> fp8(const std::string& name) const override;

 private:
  // The slice of `name`: along dim 0 (rows) or dim 1 (columns), [start, start + count); dim -1
  // for a tensor served whole.
  struct Cut {
    int dim = -1;
    int64_t start = 0, count = 0;
  };
  Cut cut(const std::string& name) const;

  const Checkpoint& base_;
  ModelConfig config_;
  TensorParallel tp_;
};

}  // namespace taco
