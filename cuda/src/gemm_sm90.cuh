// The sm_90a GEMM template behind the sm90_* configs: CUTLASS 3.x collective builders (TMA loads,
// wgmma, warp-specialized producer / consumer warp groups, TMA-store epilogue with a fused bias).
//
// The problem is computed swapped, out^T = w @ x^T, so that the weight rows fill the 64- or
// 128-row wgmma M side and the token count m sits on the N side, where tiles can be as narrow as
// 16 (decode). In CUTLASS terms (problem n x m x k):
//   A = w    [n, k] row-major (k-major), leading stride w_stride
//   B = x^T  [k, m] column-major (k-major): x [m, k] row-major, leading stride x_stride
//   D = out^T [n, m] column-major: out [m, n] row-major, leading stride out_stride
//   bias [n] is then a per-row (of D) bias: LinCombPerRowBias with alpha = 1, beta = 0, no C.
// The sm_80 compile pass instantiates the same types; CUTLASS compiles the kernel bodies only for
// sm_90a, and gemm.cu runs these configs on compute capability 9.0 only.
#pragma once

#include <cutlass/bfloat16.h>
#include <cutlass/cutlass.h>
#include <cutlass/gemm/device/gemm_universal_adapter.h>
#include <cutlass/half.h>
#include <cute/tensor.hpp>
#include <cutlass/epilogue/collective/collective_builder.hpp>
#include <cutlass/epilogue/fusion/operations.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/gemm/kernel/gemm_universal.hpp>
#include <cutlass/gemm/kernel/tile_scheduler.hpp>

#include "gemm_kernels.cuh"

namespace taco::cuda::gemm_detail {

// Device facts cached per device by gemm.cu.
int current_device_sm_count();

// One sm_90 kernel configuration. Tile and Cluster are cute shapes over (n, m, k) of the swapped
// problem; Scheduler is void (one CTA per tile), PersistentScheduler or StreamKScheduler.
template <class Tile, class Cluster, class KernelSchedule, class EpilogueSchedule, class Scheduler>
struct Sm90Config {
  using TileShape = Tile;
  using ClusterShape = Cluster;
  using Kernel = KernelSchedule;
  using Epilogue = EpilogueSchedule;
  using TileScheduler = Scheduler;
};

template <typename T, class Cfg>
struct Sm90Gemm {
  using LayoutW = cutlass::layout::RowMajor;
  using LayoutX = cutlass::layout::ColumnMajor;
  using LayoutOut = cutlass::layout::ColumnMajor;
  static constexpr int kAlign = 8;  // elements in 16 bytes: the TMA / vector access unit
  using Fusion = cutlass::epilogue::fusion::LinCombPerRowBias<T, float, T, T, float>;

  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, typename Cfg::TileShape,
      typename Cfg::ClusterShape, cutlass::epilogue::collective::EpilogueTileAuto, float, float,
      void, LayoutOut, kAlign, T, LayoutOut, kAlign, typename Cfg::Epilogue, Fusion>::CollectiveOp;

  // Pipeline stages fill the shared memory the epilogue leaves.
  using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, T, LayoutW, kAlign, T, LayoutX, kAlign,
      float, typename Cfg::TileShape, typename Cfg::ClusterShape,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
          sizeof(typename Epilogue::SharedStorage))>,
      typename Cfg::Kernel>::CollectiveOp;

  using Kernel = cutlass::gemm::kernel::GemmUniversal<cute::Shape<int, int, int, int>, Mainloop,
                                                      Epilogue, typename Cfg::TileScheduler>;
  using Device = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
  using Arguments = typename Device::Arguments;

  static Arguments arguments(const GemmParams& p) {
    using cute::Int;
    const auto stride_w = cute::make_stride(p.w_stride, Int<1>{}, int64_t{0});
    const auto stride_x = cute::make_stride(p.x_stride, Int<1>{}, int64_t{0});
    const auto stride_out = cute::make_stride(Int<1>{}, p.out_stride, int64_t{0});
    cutlass::KernelHardwareInfo hw;
    cudaGetDevice(&hw.device_id);
    hw.sm_count = current_device_sm_count();
    Arguments args{cutlass::gemm::GemmUniversalMode::kGemm,
                   {static_cast<int>(p.n), static_cast<int>(p.m), static_cast<int>(p.k), 1},
                   {static_cast<const T*>(p.w), stride_w, static_cast<const T*>(p.x), stride_x},
                   {{}, nullptr, stride_out, static_cast<T*>(p.out), stride_out},
                   hw};
    args.epilogue.thread.alpha = 1.0f;
    args.epilogue.thread.beta = 0.0f;
    args.epilogue.thread.bias_ptr = static_cast<const T*>(p.bias);  // nullptr: adds zero
    return args;
  }
};

template <typename T, class Cfg>
size_t sm90_workspace_typed(const GemmParams& p) {
  using G = Sm90Gemm<T, Cfg>;
  return G::Device::get_workspace_size(G::arguments(p));
}

template <typename T, class Cfg>
cudaError_t sm90_run_typed(const GemmParams& p, cudaStream_t stream) {
  using G = Sm90Gemm<T, Cfg>;
  const typename G::Arguments args = G::arguments(p);
  typename G::Device op;
  if (G::Device::can_implement(args) != cutlass::Status::kSuccess) return cudaErrorInvalidValue;
  if (G::Device::get_workspace_size(args) > p.workspace_bytes) return cudaErrorInvalidValue;
  // initialize() zeroes what the stream-K scheduler needs of the workspace, on `stream`.
  return initialize_and_run(op, args, p.workspace, stream);
}

template <class Cfg>
cudaError_t sm90_run(const GemmParams& p, cudaStream_t stream) {
  if (p.dtype == DType::kBFloat16) return sm90_run_typed<cutlass::bfloat16_t, Cfg>(p, stream);
  if (p.dtype == DType::kFloat16) return sm90_run_typed<cutlass::half_t, Cfg>(p, stream);
  return cudaErrorNotSupported;
}

template <class Cfg>
size_t sm90_workspace(const GemmParams& p) {
  if (p.dtype == DType::kBFloat16) return sm90_workspace_typed<cutlass::bfloat16_t, Cfg>(p);
  if (p.dtype == DType::kFloat16) return sm90_workspace_typed<cutlass::half_t, Cfg>(p);
  return 0;
}

}  // namespace taco::cuda::gemm_detail
