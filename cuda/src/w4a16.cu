// W4A16. The GEMV kernel gives each weight row one warp: lanes stride over k eight columns at a
// time (one 32-bit word of codes, one 16-byte pack of x per x row), widen the eight codes with
// their block's scale, offset and zero point in float32, and a warp reduction finishes each
// output. Decode-sized batches read the 4-bit weight once and every x row from L1/L2. The
// dequantize kernel writes the dense weight, one 16-byte pack per thread.
#include "common.cuh"
#include "taco/cuda/w4a16.h"

namespace taco::cuda {
namespace {

constexpr int kWarps = 4;  // weight rows per CTA
constexpr int kCols = 8;   // columns per lane step: one 32-bit word of codes

// The eight weights of columns c .. c + 7 of row `row` (c a multiple of 8).
__device__ __forceinline__ void weights8(const W4A16Params& p, int64_t row, int64_t c,
                                         float (&w)[kCols]) {
  const uint32_t q =
      __ldg(reinterpret_cast<const uint32_t*>(p.codes + row * (p.k / 2)) + c / kCols);
  const int64_t b = row * (p.k / kernels::kW4Block) + c / kernels::kW4Block;
  const float d = __half2float(__ushort_as_half(__ldg(p.d + b)));
  const float m = __half2float(__ushort_as_half(__ldg(p.mofs + b)));
  const float z = static_cast<float>(__ldg(p.z + b));
#pragma unroll
  for (int j = 0; j < kCols; ++j) w[j] = d * (static_cast<float>((q >> (4 * j)) & 15u) - z) + m;
}

template <typename T, int M>
__global__ void w4a16_gemv_kernel(W4A16Params p) {
  using P = Pack<T, kCols>;
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (row >= p.n) return;
  float acc[M];
#pragma unroll
  for (int i = 0; i < M; ++i) acc[i] = 0.0f;
  const T* x = static_cast<const T*>(p.x);
  for (int64_t c = static_cast<int64_t>(lane) * kCols; c < p.k; c += 32 * kCols) {
    float w[kCols];
    weights8(p, row, c, w);
#pragma unroll
    for (int i = 0; i < M; ++i) {
      const P xv = *reinterpret_cast<const P*>(x + i * p.x_stride + c);
#pragma unroll
      for (int j = 0; j < kCols; ++j) acc[i] += w[j] * to_float(xv.v[j]);
    }
  }
#pragma unroll
  for (int i = 0; i < M; ++i) acc[i] = warp_sum(acc[i]);
  if (lane == 0) {
    T* out = static_cast<T*>(p.out);
#pragma unroll
    for (int i = 0; i < M; ++i) out[i * p.out_stride + row] = from_float<T>(acc[i]);
  }
}

template <typename T>
__global__ void w4a16_dequantize_kernel(W4A16Params p, T* dense) {
  using P = Pack<T, kCols>;
  const int64_t per_row = p.k / kCols;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.n * per_row) return;
  const int64_t row = i / per_row, c = (i % per_row) * kCols;
  float w[kCols];
  weights8(p, row, c, w);
  P o;
#pragma unroll
  for (int j = 0; j < kCols; ++j) o.v[j] = from_float<T>(w[j]);
  *reinterpret_cast<P*>(dense + row * p.k + c) = o;
}

template <typename T, int M>
cudaError_t launch_gemv(const W4A16Params& p, cudaStream_t stream) {
  const unsigned grid = static_cast<unsigned>(ceil_div(p.n, kWarps));
  w4a16_gemv_kernel<T, M><<<grid, kWarps * 32, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename T>
cudaError_t gemv_rows(const W4A16Params& p, cudaStream_t stream) {
  switch (p.m) {
    case 1:
      return launch_gemv<T, 1>(p, stream);
    case 2:
      return launch_gemv<T, 2>(p, stream);
    case 3:
      return launch_gemv<T, 3>(p, stream);
    case 4:
      return launch_gemv<T, 4>(p, stream);
    case 5:
      return launch_gemv<T, 5>(p, stream);
    case 6:
      return launch_gemv<T, 6>(p, stream);
    case 7:
      return launch_gemv<T, 7>(p, stream);
    default:
      return launch_gemv<T, 8>(p, stream);
  }
}

bool weight_aligned(const W4A16Params& p) {
  // 32-bit code words: rows of k / 2 bytes start 4-byte aligned when k % 8 == 0 (k % 32 == 0).
  return reinterpret_cast<uintptr_t>(p.codes) % 4 == 0;
}

}  // namespace

cudaError_t w4a16_gemv(const W4A16Params& p, cudaStream_t stream) {
  if (!p.check().empty() || p.m > kW4GemvMaxRows || !weight_aligned(p)) {
    return cudaErrorInvalidValue;
  }
  if (p.m == 0) return cudaSuccess;
  if (!aligned16(p.x)) return cudaErrorInvalidValue;
  if (p.dtype == DType::kBFloat16) return gemv_rows<__nv_bfloat16>(p, stream);
  return gemv_rows<__half>(p, stream);
}

cudaError_t w4a16_dequantize(const W4A16Params& p, void* dense, cudaStream_t stream) {
  W4A16Params q = p;
  q.m = 0;  // x and out are not read
  if (!q.check().empty() || !weight_aligned(q) || !aligned16(dense)) return cudaErrorInvalidValue;
  const int64_t packs = q.n * (q.k / kCols);
  const unsigned grid = static_cast<unsigned>(ceil_div(packs, 256));
  if (q.dtype == DType::kBFloat16) {
    w4a16_dequantize_kernel<<<grid, 256, 0, stream>>>(q, static_cast<__nv_bfloat16*>(dense));
  } else {
    w4a16_dequantize_kernel<<<grid, 256, 0, stream>>>(q, static_cast<__half*>(dense));
  }
  return cudaGetLastError();
}

}  // namespace taco::cuda
