// LoRA shrink / expand. Shrink: grid (tokens, A columns / 8), a warp per A column j, lanes over
// the input. Expand: grid (tokens, out / 256), a thread per output column; B rows are
// [rank, out], so a warp reads each of them coalesced.
#include "common.cuh"
#include "taco/cuda/lora.h"

namespace taco::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = 256;

template <typename T, typename W>
__global__ void lora_shrink_kernel(LoraParams p) {
  const int64_t t = blockIdx.x;
  const int slot = p.token_slot[t];
  const int64_t sr = p.slices * p.rank;
  const int64_t j = static_cast<int64_t>(blockIdx.y) * kWarps + threadIdx.x / 32;
  if (slot < 0 || j >= sr) return;
  const T* x = static_cast<const T*>(p.x) + t * p.x_stride;
  const W* a = static_cast<const W*>(p.a) + slot * p.in * sr + j;
  float acc = 0.0f;
  for (int64_t c = threadIdx.x % 32; c < p.in; c += 32) {
    acc += to_float(x[c]) * to_float(a[c * sr]);
  }
  acc = warp_sum(acc);
  if (threadIdx.x % 32 == 0) p.scratch[t * sr + j] = acc;
}

template <typename T, typename W>
__global__ void lora_expand_kernel(LoraParams p) {
  const int64_t t = blockIdx.x;
  const int slot = p.token_slot[t];
  const int64_t o = static_cast<int64_t>(blockIdx.y) * kThreads + threadIdx.x;
  if (slot < 0 || o >= p.out) return;
  int s = 0;
  while (s + 1 < p.slices && o >= p.slice_start[s + 1]) ++s;
  const float* coef = p.scratch + t * p.slices * p.rank + s * p.rank;
  const W* b = static_cast<const W*>(p.b) + slot * p.rank * p.out + o;
  float acc = 0.0f;
  for (int64_t r = 0; r < p.rank; ++r) acc += coef[r] * to_float(b[r * p.out]);
  T* y = static_cast<T*>(p.y) + t * p.y_stride + o;
  *y = from_float<T>(to_float(*y) + acc);
}

}  // namespace

cudaError_t lora_apply(const LoraParams& p, cudaStream_t stream) {
  if (p.tokens == 0) return cudaSuccess;
  if (!p.check().empty() || p.scratch == nullptr) return cudaErrorInvalidValue;
  const int64_t sr = p.slices * p.rank;
  if (p.tokens > 2147483647 || ceil_div(sr, kWarps) > 65535 || ceil_div(p.out, kThreads) > 65535) {
    return cudaErrorInvalidValue;
  }
  return dispatch(p.dtype, [&]<typename T>() {
    return dispatch(p.weight_dtype, [&]<typename W>() {
      const dim3 shrink_grid(static_cast<unsigned>(p.tokens),
                             static_cast<unsigned>(ceil_div(sr, kWarps)));
      lora_shrink_kernel<T, W><<<shrink_grid, kWarps * 32, 0, stream>>>(p);
      const cudaError_t err = cudaGetLastError();
      if (err != cudaSuccess) return err;
      const dim3 expand_grid(static_cast<unsigned>(p.tokens),
                             static_cast<unsigned>(ceil_div(p.out, kThreads)));
      lora_expand_kernel<T, W><<<expand_grid, kThreads, 0, stream>>>(p);
      return cudaGetLastError();
    });
  });
}

}  // namespace taco::cuda
