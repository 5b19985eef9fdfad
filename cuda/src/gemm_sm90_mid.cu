// Mid-m sm_90 config (a few hundred tokens against Llama-sized n), tile n x m x k of the swapped
// problem:
//   sm90_pp_64x128: ping-pong (two consumer warp groups on alternate tiles, one's epilogue under
//                   the other's mainloop), 64 x 128 x 64, persistent, no cluster. At m = 256 and
//                   n = 3072..4096 its 64-row tiles make 96..128 tiles, one full wave of the 132
//                   SMs, where 128-row tiles leave half of them idle (48..64 tiles) and 64 x 64
//                   tiles spill into a second wave (192..256 tiles).
#include "gemm_sm90.cuh"

namespace taco::cuda::gemm_detail {
namespace {

using cute::_1;
using cute::_128;
using cute::_64;

using Pp64x128 =
    Sm90Config<cute::Shape<_64, _128, _64>, cute::Shape<_1, _1, _1>,
               cutlass::gemm::KernelTmaWarpSpecializedPingpong,
               cutlass::epilogue::TmaWarpSpecialized, cutlass::gemm::PersistentScheduler>;

}  // namespace

cudaError_t sm90_pp_64x128(const GemmParams& p, cudaStream_t s) { return sm90_run<Pp64x128>(p, s); }
size_t sm90_pp_64x128_workspace(const GemmParams& p) { return sm90_workspace<Pp64x128>(p); }

}  // namespace taco::cuda::gemm_detail
