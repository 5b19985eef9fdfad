// Merges split-KV partials: out = sum_s acc_s * exp(m_s - M) / sum_s l_s * exp(m_s - M), with
// M the largest split max. A split that saw no key of a row has m = -inf and l = 0 and drops out.
// Grid (tokens, heads); one thread per feature.
#include <cmath>

#include "attention_plan.cuh"

namespace taco::cuda {
namespace {

template <typename T>
__global__ void attention_reduce_kernel(PagedAttentionParams p, int num_splits) {
  const int64_t t = blockIdx.x, h = blockIdx.y, d = threadIdx.x;
  const int64_t rows = p.tokens * p.num_heads;  // (token, head) rows per split
  const int64_t row = t * p.num_heads + h;
  const float* acc = p.workspace;
  const float* max = acc + num_splits * rows * p.head_dim;
  const float* sum = max + num_splits * rows;
  float m = -INFINITY;
  for (int s = 0; s < num_splits; ++s) m = fmaxf(m, max[s * rows + row]);
  float total = 0.0f, o = 0.0f;
  for (int s = 0; s < num_splits; ++s) {
    const float ms = max[s * rows + row];
    if (ms == -INFINITY) continue;
    const float w = __expf(ms - m);
    total += sum[s * rows + row] * w;
    o += acc[(s * rows + row) * p.head_dim + d] * w;
  }
  static_cast<T*>(p.out)[row * p.head_dim + d] = from_float<T>(o / total);
}

}  // namespace

cudaError_t launch_attention_reduce(const PagedAttentionParams& p, int num_splits,
                                    cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.tokens), static_cast<unsigned>(p.num_heads));
  return dispatch(p.dtype, [&]<typename T>() {
    attention_reduce_kernel<T>
        <<<grid, static_cast<unsigned>(p.head_dim), 0, stream>>>(p, num_splits);
    return cudaGetLastError();
  });
}

}  // namespace taco::cuda
