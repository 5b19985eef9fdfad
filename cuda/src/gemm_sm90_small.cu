// Decode-sized sm_90 configs (m up to 64 tokens), tiles n x m x k of the swapped problem:
//   sm90_ws_64x16:  one consumer warp group per CTA, 64 weight rows x 16 tokens, k-tile 128;
//                   the weight stream dominates, so deep k pipelines and many CTAs matter most.
//   sm90_pp_64x64:  ping-pong (two consumer warp groups on alternate tiles, one's epilogue under
//                   the other's mainloop), 64 x 64 x 128, persistent.
#include "gemm_sm90.cuh"

namespace taco::cuda::gemm_detail {
namespace {

using cute::_1;
using cute::_128;
using cute::_16;
using cute::_64;

using Ws64x16 = Sm90Config<cute::Shape<_64, _16, _128>, cute::Shape<_1, _1, _1>,
                           cutlass::gemm::KernelTmaWarpSpecialized,
                           cutlass::epilogue::TmaWarpSpecialized, void>;
using Pp64x64 =
    Sm90Config<cute::Shape<_64, _64, _128>, cute::Shape<_1, _1, _1>,
               cutlass::gemm::KernelTmaWarpSpecializedPingpong,
               cutlass::epilogue::TmaWarpSpecialized, cutlass::gemm::PersistentScheduler>;

}  // namespace

cudaError_t sm90_ws_64x16(const GemmParams& p, cudaStream_t s) { return sm90_run<Ws64x16>(p, s); }
size_t sm90_ws_64x16_workspace(const GemmParams& p) { return sm90_workspace<Ws64x16>(p); }
cudaError_t sm90_pp_64x64(const GemmParams& p, cudaStream_t s) { return sm90_run<Pp64x64>(p, s); }
size_t sm90_pp_64x64_workspace(const GemmParams& p) { return sm90_workspace<Pp64x64>(p); }

}  // namespace taco::cuda::gemm_detail
