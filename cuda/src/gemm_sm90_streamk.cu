// Stream-K sm_90 config for small m when the output has too few tiles to occupy every SM (decode
// on Llama-sized n = 4096..6144 leaves 32..96 tiles of 128 rows for 132 SMs): the k loop of
// the tiles is split across all SMs, partial sums meet in the workspace. Cooperative kernel,
// tile 128 x 32 x 128 (n x m x k of the swapped problem). The reduction is deterministic (fixed
// order), so repeated runs give bit-identical outputs.
#include "gemm_sm90.cuh"

namespace taco::cuda::gemm_detail {
namespace {

using cute::_1;
using cute::_128;
using cute::_32;

using StreamK128x32 =
    Sm90Config<cute::Shape<_128, _32, _128>, cute::Shape<_1, _1, _1>,
               cutlass::gemm::KernelTmaWarpSpecializedCooperative,
               cutlass::epilogue::TmaWarpSpecializedCooperative, cutlass::gemm::StreamKScheduler>;

}  // namespace

cudaError_t sm90_sk_128x32(const GemmParams& p, cudaStream_t s) {
  return sm90_run<StreamK128x32>(p, s);
}
size_t sm90_sk_128x32_workspace(const GemmParams& p) { return sm90_workspace<StreamK128x32>(p); }

}  // namespace taco::cuda::gemm_detail
