// sm_80 fallback GEMMs for non-Hopper devices: CUTLASS 2.x multistage tensor-op kernels
// (cp.async global -> shared pipelines, mma.sync m16n8k16), float32 accumulation.
//   A = x [m, k] row-major, B = w^T [k, n] column-major (w [n, k] row-major, ld w_stride),
//   D = out [m, n] row-major. The bias enters as the epilogue's source C with leading stride 0
//   (row i of C is bias) and beta = 1; without bias beta = 0 and C is never read.
//   sm80_64x64:   64 x 64 x 64 tiles, 4 warps, 5 stages: small m, many CTAs.
//   sm80_128x128: 128 x 128 x 32 tiles, 4 warps of 64 x 64, 4 stages.
// No workspace (one k slice). Compiled for both targets; on sm_90 these kernels run from the
// sm_90a cubin (mma.sync is valid there), which is how the tests reach them on an H100.
#include <cutlass/bfloat16.h>
#include <cutlass/cutlass.h>
#include <cutlass/epilogue/thread/linear_combination.h>
#include <cutlass/gemm/device/gemm.h>
#include <cutlass/half.h>

#include "gemm_kernels.cuh"

namespace taco::cuda::gemm_detail {
namespace {

template <typename T, class Tile, class Warp, int Stages>
cudaError_t sm80_run_typed(const GemmParams& p, cudaStream_t stream) {
  constexpr int kAlign = 8;  // elements in 16 bytes: one cp.async / vector access
  using Gemm = cutlass::gemm::device::Gemm<
      T, cutlass::layout::RowMajor, T, cutlass::layout::ColumnMajor, T, cutlass::layout::RowMajor,
      float, cutlass::arch::OpClassTensorOp, cutlass::arch::Sm80, Tile, Warp,
      cutlass::gemm::GemmShape<16, 8, 16>,
      cutlass::epilogue::thread::LinearCombination<T, kAlign, float, float>,
      cutlass::gemm::threadblock::GemmIdentityThreadblockSwizzle<8>, Stages, kAlign, kAlign>;
  const T* x = static_cast<const T*>(p.x);
  const T* w = static_cast<const T*>(p.w);
  T* out = static_cast<T*>(p.out);
  const bool has_bias = p.bias != nullptr;
  const T* source = has_bias ? static_cast<const T*>(p.bias) : out;
  typename Gemm::Arguments args(
      {static_cast<int>(p.m), static_cast<int>(p.n), static_cast<int>(p.k)}, {x, p.x_stride},
      {w, p.w_stride}, {source, has_bias ? 0 : p.out_stride}, {out, p.out_stride},
      {1.0f, has_bias ? 1.0f : 0.0f});
  Gemm op;
  if (op.can_implement(args) != cutlass::Status::kSuccess) return cudaErrorInvalidValue;
  return initialize_and_run(op, args, nullptr, stream);
}

template <class Tile, class Warp, int Stages>
cudaError_t sm80_run(const GemmParams& p, cudaStream_t stream) {
  if (p.dtype == DType::kBFloat16)
    return sm80_run_typed<cutlass::bfloat16_t, Tile, Warp, Stages>(p, stream);
  if (p.dtype == DType::kFloat16)
    return sm80_run_typed<cutlass::half_t, Tile, Warp, Stages>(p, stream);
  return cudaErrorNotSupported;
}

using cutlass::gemm::GemmShape;

}  // namespace

cudaError_t sm80_64x64(const GemmParams& p, cudaStream_t s) {
  return sm80_run<GemmShape<64, 64, 64>, GemmShape<32, 32, 64>, 5>(p, s);
}
cudaError_t sm80_128x128(const GemmParams& p, cudaStream_t s) {
  return sm80_run<GemmShape<128, 128, 32>, GemmShape<64, 64, 32>, 4>(p, s);
}
size_t sm80_workspace(const GemmParams&) { return 0; }

}  // namespace taco::cuda::gemm_detail
