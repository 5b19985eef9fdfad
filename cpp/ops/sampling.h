// Sampling on the device: the ATen side of cuda/include/taco/cuda/sampling.h. The sampler
// (cpp/model/sampler.cpp) decides which batches may sample there and draws the uniform numbers;
// this only moves settings and results across and launches the kernel.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace taco::ops {

// One row's settings (the semantics of taco/cuda/sampling.h).
struct RowSampling {
  float temperature = 0.0f;  // 0: greedy
  int32_t top_k = 0;         // <= 0: off
  float top_p = 1.0f;
  float min_p = 0.0f;
  double uniform = 0.0;  // in [0, 1), drawn by the caller
};

// What sample_rows hands back, on the host.
struct SampledRows {
  std::vector<int32_t> token;       // [N]
  std::vector<int32_t> rank;        // [N]
  std::vector<float> logprob;       // [N]
  std::vector<int32_t> top_ids;     // [N, num_top] row-major, -1 past the kept ids
  std::vector<float> top_logprobs;  // [N, num_top]
};

// Longest top list sample_rows serves (0 in builds without CUDA).
int device_sample_top_max();

// Samples each row of logits [N, >= vocab] float32 (contiguous rows) on its CUDA device: one
// kernel and one small copy each way. CUDA builds and CUDA logits only.
SampledRows sample_rows(const at::Tensor& logits, int64_t vocab,
                        const std::vector<RowSampling>& rows, int num_top);

// Applies grammar token bitmasks to rows of logits [N, >= vocab] float32 (contiguous rows) on
// its CUDA device: bits [num_masks, words] int32 on the host, mask i for logits row rows[i]; a
// cleared bit t makes logit t -inf. One small copy and one kernel. CUDA builds and logits only.
void apply_token_bitmask(at::Tensor& logits, int64_t vocab, const std::vector<int32_t>& rows,
                         const std::vector<int32_t>& bits, int32_t words);

}  // namespace taco::ops
