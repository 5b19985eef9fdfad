// RMSNorm and fused residual-add RMSNorm. One block per token: a strided pass accumulates the
// sum of squares in float32 (the fused variant first stores residual = round(residual + x) and
// squares the rounded value, as HF does), a block reduction gives 1/rms, and a second pass
// writes round(round(v / rms) * w). Rows move 16 bytes a thread when rows and pointers allow it.
#include "common.cuh"
#include "taco/cuda/norm.h"

namespace taco::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T, int N>
__device__ void normalize_row(T* out, const T* src, const T* w, int64_t packs, float inv) {
  using P = Pack<T, N>;
  for (int64_t i = threadIdx.x; i < packs; i += blockDim.x) {
    const P x = reinterpret_cast<const P*>(src)[i];
    const P wp = reinterpret_cast<const P*>(w)[i];
    P o;
#pragma unroll
    for (int e = 0; e < N; ++e) {
      o.v[e] = from_float<T>(round_to<T>(to_float(x.v[e]) * inv) * to_float(wp.v[e]));
    }
    reinterpret_cast<P*>(out)[i] = o;
  }
}

template <typename T, int N>
__global__ void rms_norm_kernel(RmsNormParams p) {
  using P = Pack<T, N>;
  const int64_t t = blockIdx.x, packs = p.hidden / N;
  const T* x = static_cast<const T*>(p.x) + t * p.x_stride;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < packs; i += blockDim.x) {
    const P v = reinterpret_cast<const P*>(x)[i];
#pragma unroll
    for (int e = 0; e < N; ++e) ss += to_float(v.v[e]) * to_float(v.v[e]);
  }
  const float inv = rsqrtf(block_sum(ss) / static_cast<float>(p.hidden) + p.eps);
  normalize_row<T, N>(static_cast<T*>(p.out) + t * p.out_stride, x, static_cast<const T*>(p.weight),
                      packs, inv);
}

// out may alias x: every thread reads its x packs in the first pass, and the block reduction's
// barrier separates those reads from the second pass's writes.
template <typename T, int N>
__global__ void fused_add_rms_norm_kernel(RmsNormParams p) {
  using P = Pack<T, N>;
  const int64_t t = blockIdx.x, packs = p.hidden / N;
  const P* x = reinterpret_cast<const P*>(static_cast<const T*>(p.x) + t * p.x_stride);
  T* res = static_cast<T*>(p.residual) + t * p.hidden;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < packs; i += blockDim.x) {
    const P xv = x[i];
    P r = reinterpret_cast<P*>(res)[i];
#pragma unroll
    for (int e = 0; e < N; ++e) {
      r.v[e] = from_float<T>(to_float(r.v[e]) + to_float(xv.v[e]));
      const float rv = to_float(r.v[e]);
      ss += rv * rv;
    }
    reinterpret_cast<P*>(res)[i] = r;
  }
  const float inv = rsqrtf(block_sum(ss) / static_cast<float>(p.hidden) + p.eps);
  // Each thread re-reads only the residual packs it wrote itself, so no extra barrier is needed.
  normalize_row<T, N>(static_cast<T*>(p.out) + t * p.out_stride, res,
                      static_cast<const T*>(p.weight), packs, inv);
}

template <typename T>
bool vectorizable(const RmsNormParams& p) {
  constexpr int n = kVec<T>;
  return p.hidden % n == 0 && p.x_stride % n == 0 && p.out_stride % n == 0 && aligned16(p.x) &&
         aligned16(p.out) && aligned16(p.weight) && (!p.residual || aligned16(p.residual));
}

}  // namespace

cudaError_t rms_norm(const RmsNormParams& p, cudaStream_t stream) {
  if (p.tokens == 0) return cudaSuccess;
  if (!p.check().empty()) return cudaErrorInvalidValue;
  return dispatch(p.dtype, [&]<typename T>() {
    const unsigned grid = static_cast<unsigned>(p.tokens);
    if (vectorizable<T>(p)) {
      rms_norm_kernel<T, kVec<T>><<<grid, kThreads, 0, stream>>>(p);
    } else {
      rms_norm_kernel<T, 1><<<grid, kThreads, 0, stream>>>(p);
    }
    return cudaGetLastError();
  });
}

cudaError_t fused_add_rms_norm(const RmsNormParams& p, cudaStream_t stream) {
  if (p.tokens == 0) return cudaSuccess;
  if (!p.check(/*fused=*/true).empty()) return cudaErrorInvalidValue;
  if (!p.residual) return cudaErrorInvalidValue;
  return dispatch(p.dtype, [&]<typename T>() {
    const unsigned grid = static_cast<unsigned>(p.tokens);
    if (vectorizable<T>(p)) {
      fused_add_rms_norm_kernel<T, kVec<T>><<<grid, kThreads, 0, stream>>>(p);
    } else {
      fused_add_rms_norm_kernel<T, 1><<<grid, kThreads, 0, stream>>>(p);
    }
    return cudaGetLastError();
  });
}

}  // namespace taco::cuda
