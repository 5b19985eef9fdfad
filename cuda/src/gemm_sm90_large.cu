// Prefill-sized sm_90 configs, tiles n x m x k of the swapped problem, cooperative kernels (two
// consumer warp groups split each tile's n rows), persistent tile scheduler, 2-CTA clusters along
// n so that each token tile (x) is fetched once by TMA multicast for both CTAs:
//   sm90_coop_128x128: 128 x 128 x 64, for m up to a few hundred tokens or few n tiles.
//   sm90_coop_128x256: 128 x 256 x 64, the large-m workhorse (half the x re-reads of 128x128).
#include "gemm_sm90.cuh"

namespace taco::cuda::gemm_detail {
namespace {

using cute::_1;
using cute::_128;
using cute::_2;
using cute::_256;
using cute::_64;

using Coop128x128 = Sm90Config<cute::Shape<_128, _128, _64>, cute::Shape<_2, _1, _1>,
                               cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                               cutlass::epilogue::TmaWarpSpecializedCooperative,
                               cutlass::gemm::PersistentScheduler>;
using Coop128x256 = Sm90Config<cute::Shape<_128, _256, _64>, cute::Shape<_2, _1, _1>,
                               cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                               cutlass::epilogue::TmaWarpSpecializedCooperative,
                               cutlass::gemm::PersistentScheduler>;

}  // namespace

cudaError_t sm90_coop_128x128(const GemmParams& p, cudaStream_t s) {
  return sm90_run<Coop128x128>(p, s);
}
size_t sm90_coop_128x128_workspace(const GemmParams& p) { return sm90_workspace<Coop128x128>(p); }
cudaError_t sm90_coop_128x256(const GemmParams& p, cudaStream_t s) {
  return sm90_run<Coop128x256>(p, s);
}
size_t sm90_coop_128x256_workspace(const GemmParams& p) { return sm90_workspace<Coop128x256>(p); }

}  // namespace taco::cuda::gemm_detail
