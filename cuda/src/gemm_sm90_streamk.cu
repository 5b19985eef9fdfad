// Stream-K sm_90 config for large m whose 128 x 256 tiles come to just over a whole number of
// waves (m = 8192, n = 576: 160 tiles for 132 SMs, the second wave 21% full): CUTLASS runs the
// full waves data-parallel and spreads the k loops of the remainder over every SM; partial sums
// meet in the workspace. The reduction is deterministic (fixed order), so repeated runs give
// bit-identical outputs. Cooperative kernel, no cluster, tile 128 x 256 x 64 (n x m x k of the
// swapped problem). (A 128 x 32 stream-K config for decode m lost to the 64-row data-parallel
// tiles at every shape measured on the H100, and was dropped.)
#include "gemm_sm90.cuh"

namespace taco::cuda::gemm_detail {
namespace {

using cute::_1;
using cute::_128;
using cute::_256;
using cute::_64;

using StreamK128x256 =
    Sm90Config<cute::Shape<_128, _256, _64>, cute::Shape<_1, _1, _1>,
               cutlass::gemm::KernelTmaWarpSpecializedCooperative,
               cutlass::epilogue::TmaWarpSpecializedCooperative, cutlass::gemm::StreamKScheduler>;

}  // namespace

cudaError_t sm90_sk_128x256(const GemmParams& p, cudaStream_t s) {
  return sm90_run<StreamK128x256>(p, s);
}
size_t sm90_sk_128x256_workspace(const GemmParams& p) { return sm90_workspace<StreamK128x256>(p); }

}  // namespace taco::cuda::gemm_detail
