// Device buffers for sample(): one row's settings per entry, uploaded, and the outputs poisoned
// (-7 ids, NaN values), shared by the kernel test and the bench.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "cuda_test_util.h"
#include "taco/cuda/sampling.h"

namespace taco::cuda::testing {

struct RowSettings {
  float temperature;
  int32_t top_k;
  float top_p;
  float min_p;
  double uniform;
};

template <typename T, typename F>
std::vector<T> column(const std::vector<RowSettings>& rows, F field) {
  std::vector<T> out;
  for (const RowSettings& r : rows) out.push_back(r.*field);
  return out;
}

struct SampleBuffers {
  SampleBuffers(const std::vector<RowSettings>& rows, int num_top)
      : num_top(num_top),
        temperature(column<float>(rows, &RowSettings::temperature)),
        top_p(column<float>(rows, &RowSettings::top_p)),
        min_p(column<float>(rows, &RowSettings::min_p)),
        top_k(column<int32_t>(rows, &RowSettings::top_k)),
        uniform(column<double>(rows, &RowSettings::uniform)),
        token(std::vector<int32_t>(rows.size(), -7)),
        rank(std::vector<int32_t>(rows.size(), -7)),
        logprob(std::vector<float>(rows.size(), NAN)),
        top_ids(std::vector<int32_t>(std::max<size_t>(1, rows.size() * num_top), -7)),
        top_logprobs(std::vector<float>(std::max<size_t>(1, rows.size() * num_top), NAN)) {}

  // The params over these buffers for logits [rows, stride] of which vocab columns count.
  SampleParams params(const float* logits, int64_t vocab, int64_t stride) const {
    SampleParams p;
    p.logits = logits;
    p.rows = static_cast<int64_t>(token.size());
    p.vocab = vocab;
    p.logits_stride = stride;
    p.temperature = temperature.get();
    p.top_k = top_k.get();
    p.top_p = top_p.get();
    p.min_p = min_p.get();
    p.uniform = uniform.get();
    p.num_top = num_top;
    p.token = token.get();
    p.logprob = logprob.get();
    p.rank = rank.get();
    p.top_ids = top_ids.get();
    p.top_logprobs = top_logprobs.get();
    return p;
  }

  int num_top;
  DeviceBuffer<float> temperature, top_p, min_p;
  DeviceBuffer<int32_t> top_k;
  DeviceBuffer<double> uniform;
  DeviceBuffer<int32_t> token, rank;
  DeviceBuffer<float> logprob;
  DeviceBuffer<int32_t> top_ids;
  DeviceBuffer<float> top_logprobs;
};

}  // namespace taco::cuda::testing
