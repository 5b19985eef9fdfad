// Rotary embedding in place. One block per token: its threads walk the (head, pair) grid of the
// token's query heads then key heads; each thread rotates one pair per step, reading cos/sin of
// the pair from the float32 cache row of the token's position.
#include "common.cuh"
#include "taco/cuda/rotary.h"

namespace taco::cuda {
namespace {

template <typename T>
__device__ __forceinline__ void rotate_pair(T* head, const float* cos, const float* sin, int64_t i,
                                            int64_t half, bool is_neox) {
  const int64_t a = is_neox ? i : 2 * i;
  const int64_t b = is_neox ? i + half : 2 * i + 1;
  const float x0 = to_float(head[a]), x1 = to_float(head[b]);
  head[a] = from_float<T>(x0 * cos[i] - x1 * sin[i]);
  head[b] = from_float<T>(x1 * cos[i] + x0 * sin[i]);
}

template <typename T>
__global__ void rotary_kernel(RotaryParams p) {
  const int64_t t = blockIdx.x;
  const int64_t pos = p.positions[t];
  if (pos < 0 || pos >= p.max_pos) return;
  const int64_t half = p.rot_dim / 2;
  const float* cos = p.cos_sin + pos * p.rot_dim;
  const float* sin = cos + half;
  T* q = static_cast<T*>(p.query) + t * p.query_stride;
  T* k = static_cast<T*>(p.key) + t * p.key_stride;
  const int64_t q_pairs = p.num_heads * half;
  const int64_t all_pairs = q_pairs + p.num_kv_heads * half;
  for (int64_t j = threadIdx.x; j < all_pairs; j += blockDim.x) {
    const bool is_q = j < q_pairs;
    const int64_t jj = is_q ? j : j - q_pairs;
    T* head = (is_q ? q : k) + (jj / half) * p.head_dim;
    rotate_pair(head, cos, sin, jj % half, half, p.is_neox);
  }
}

}  // namespace

cudaError_t rotary_embedding(const RotaryParams& p, cudaStream_t stream) {
  if (p.tokens == 0) return cudaSuccess;
  if (!p.check().empty()) return cudaErrorInvalidValue;
  if (p.rot_dim <= 0 || p.rot_dim % 2 != 0 || p.rot_dim > p.head_dim) return cudaErrorInvalidValue;
  const int64_t pairs = (p.num_heads + p.num_kv_heads) * (p.rot_dim / 2);
  const int threads = pairs >= 256 ? 256 : static_cast<int>(ceil_div(pairs, 32) * 32);
  return dispatch(p.dtype, [&]<typename T>() {
    rotary_kernel<T><<<static_cast<unsigned>(p.tokens), threads, 0, stream>>>(p);
    return cudaGetLastError();
  });
}

}  // namespace taco::cuda
