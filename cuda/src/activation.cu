// SiLU-and-mul. Grid (tokens, column chunks): each thread produces one pack of outputs from the
// matching packs of gate and up, 16 bytes a thread when rows and pointers allow it.
#include "common.cuh"
#include "taco/cuda/activation.h"

namespace taco::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T, int N>
__global__ void silu_and_mul_kernel(SiluAndMulParams p) {
  using P = Pack<T, N>;
  const int64_t t = blockIdx.x;
  const int64_t i = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (i >= p.inter / N) return;
  const T* row = static_cast<const T*>(p.x) + t * p.x_stride;
  const P g = reinterpret_cast<const P*>(row)[i];
  const P u = reinterpret_cast<const P*>(row + p.inter)[i];
  P o;
#pragma unroll
  for (int e = 0; e < N; ++e) {
    const float gv = to_float(g.v[e]);
    const float act = round_to<T>(gv / (1.0f + __expf(-gv)));
    o.v[e] = from_float<T>(act * to_float(u.v[e]));
  }
  reinterpret_cast<P*>(static_cast<T*>(p.out) + t * p.inter)[i] = o;
}

template <typename T, int N>
cudaError_t launch(const SiluAndMulParams& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.tokens),
                  static_cast<unsigned>(ceil_div(p.inter / N, kThreads)));
  silu_and_mul_kernel<T, N><<<grid, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t silu_and_mul(const SiluAndMulParams& p, cudaStream_t stream) {
  if (p.tokens == 0 || p.inter == 0) return cudaSuccess;
  if (!p.check().empty()) return cudaErrorInvalidValue;
  if (ceil_div(p.inter, kThreads) > 65535) return cudaErrorInvalidValue;  // grid.y
  return dispatch(p.dtype, [&]<typename T>() {
    constexpr int n = kVec<T>;
    const bool vec = p.inter % n == 0 && p.x_stride % n == 0 && aligned16(p.x) && aligned16(p.out);
    return vec ? launch<T, n>(p, stream) : launch<T, 1>(p, stream);
  });
}

}  // namespace taco::cuda
