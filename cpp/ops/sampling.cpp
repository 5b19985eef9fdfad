#include "ops/sampling.h"

#include <algorithm>

#if TACO_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "taco/cuda/sampling.h"
#endif

namespace taco::ops {

#if TACO_WITH_CUDA

int device_sample_top_max() { return cuda::kMaxSampleTop; }

SampledRows sample_rows(const at::Tensor& logits, int64_t vocab,
                        const std::vector<RowSampling>& rows, int num_top) {
  TORCH_CHECK(logits.is_cuda() && logits.scalar_type() == at::kFloat && logits.dim() == 2 &&
                  logits.stride(1) == 1 && logits.size(1) >= vocab,
              "sample_rows: expected CUDA float32 logits [N, >= vocab] with contiguous rows");
  const int64_t n = logits.size(0);
  TORCH_CHECK(static_cast<size_t>(n) == rows.size(), "sample_rows: ", rows.size(), " settings for ",
              n, " rows");
  TORCH_CHECK(num_top >= 0 && num_top <= cuda::kMaxSampleTop, "sample_rows: num_top ", num_top,
              " outside [0, ", cuda::kMaxSampleTop, "]");
  if (n == 0) return {};
  const c10::cuda::CUDAGuard guard(logits.device());
  // Settings in one buffer, 8-byte fields first: uniform, temperature, top_p, min_p, top_k.
  const int64_t in_bytes = n * (8 + 4 * 4);
  at::Tensor host_in = at::empty({in_bytes}, at::kByte);
  auto* uniform = reinterpret_cast<double*>(host_in.data_ptr<uint8_t>());
  auto* temperature = reinterpret_cast<float*>(uniform + n);
  float* top_p = temperature + n;
  float* min_p = top_p + n;
  auto* top_k = reinterpret_cast<int32_t*>(min_p + n);
  for (int64_t i = 0; i < n; ++i) {
    uniform[i] = rows[i].uniform;
    temperature[i] = rows[i].temperature;
    top_p[i] = rows[i].top_p;
    min_p[i] = rows[i].min_p;
    top_k[i] = rows[i].top_k;
  }
  const at::Tensor dev_in = host_in.to(logits.device());
  const auto* base = reinterpret_cast<const uint8_t*>(dev_in.data_ptr<uint8_t>());
  // Results in one buffer, column-major by field: token [n], rank [n], top ids [n, num_top], then
  // float32 logprob [n], top logprobs [n, num_top]. Reassembled per row on the host.
  const int64_t id_cols = 2 + num_top, value_cols = 1 + num_top;
  at::Tensor dev_out = at::empty({n * (id_cols + value_cols)}, logits.options().dtype(at::kInt));
  int32_t* ids = dev_out.data_ptr<int32_t>();
  auto* values = reinterpret_cast<float*>(ids + n * id_cols);
  cuda::SampleParams p;
  p.logits = logits.data_ptr<float>();
  p.rows = n;
  p.vocab = vocab;
  p.logits_stride = logits.stride(0);
  p.uniform = reinterpret_cast<const double*>(base);
  p.temperature = reinterpret_cast<const float*>(base + 8 * n);
  p.top_p = p.temperature + n;
  p.min_p = p.top_p + n;
  p.top_k = reinterpret_cast<const int32_t*>(p.min_p + n);
  p.num_top = num_top;
  p.token = ids;
  p.rank = ids + n;
  p.logprob = values;
  p.top_ids = ids + 2 * n;
  p.top_logprobs = values + n;
  const cudaError_t err =
      cuda::sample(p, c10::cuda::getCurrentCUDAStream(logits.device().index()).stream());
  TORCH_CHECK(err == cudaSuccess, "sample_rows: CUDA kernel failed: ", cudaGetErrorString(err));
  const at::Tensor host = dev_out.to(at::kCPU);
  const int32_t* h_ids = host.data_ptr<int32_t>();
  const auto* h_values = reinterpret_cast<const float*>(h_ids + n * id_cols);
  SampledRows out;
  out.token.assign(h_ids, h_ids + n);
  out.rank.assign(h_ids + n, h_ids + 2 * n);
  out.top_ids.assign(h_ids + 2 * n, h_ids + n * id_cols);
  out.logprob.assign(h_values, h_values + n);
  out.top_logprobs.assign(h_values + n, h_values + n * value_cols);
  return out;
}

void apply_token_bitmask(at::Tensor& logits, int64_t vocab, const std::vector<int32_t>& rows,
                         const std::vector<int32_t>& bits, int32_t words) {
  TORCH_CHECK(logits.is_cuda() && logits.scalar_type() == at::kFloat && logits.dim() == 2 &&
                  logits.stride(1) == 1 && logits.size(1) >= vocab,
              "apply_token_bitmask: expected CUDA float32 logits [N, >= vocab] with contiguous "
              "rows");
  TORCH_CHECK(bits.size() == rows.size() * static_cast<size_t>(words),
              "apply_token_bitmask: ", bits.size(), " mask words for ", rows.size(), " rows of ",
              words);
  for (int32_t r : rows) {
    TORCH_CHECK(r >= 0 && r < logits.size(0), "apply_token_bitmask: row ", r, " outside [0, ",
                logits.size(0), ")");
  }
  if (rows.empty()) return;
  const c10::cuda::CUDAGuard guard(logits.device());
  // Row numbers, then the mask words: one host buffer, one copy.
  at::Tensor host = at::empty({static_cast<int64_t>(rows.size() + bits.size())}, at::kInt);
  int32_t* h = host.data_ptr<int32_t>();
  std::copy(rows.begin(), rows.end(), h);
  std::copy(bits.begin(), bits.end(), h + rows.size());
  const at::Tensor dev = host.to(logits.device());
  cuda::TokenBitmaskParams p;
  p.logits = logits.data_ptr<float>();
  p.logits_stride = logits.stride(0);
  p.vocab = vocab;
  p.rows = dev.data_ptr<int32_t>();
  p.bitmask = p.rows + rows.size();
  p.words = words;
  p.num_rows = static_cast<int32_t>(rows.size());
  const cudaError_t err = cuda::apply_token_bitmask(
      p, c10::cuda::getCurrentCUDAStream(logits.device().index()).stream());
  TORCH_CHECK(err == cudaSuccess,
              "apply_token_bitmask: CUDA kernel failed: ", cudaGetErrorString(err));
}

#else

int device_sample_top_max() { return 0; }

void apply_token_bitmask(at::Tensor&, int64_t, const std::vector<int32_t>&,
                         const std::vector<int32_t>&, int32_t) {
  TORCH_CHECK(false, "apply_token_bitmask: CUDA backend not built");
}

SampledRows sample_rows(const at::Tensor&, int64_t, const std::vector<RowSampling>&, int) {
  TORCH_CHECK(false, "sample_rows: CUDA backend not built");
}

#endif

}  // namespace taco::ops
