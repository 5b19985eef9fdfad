// The compiled GEMM kernel configurations, one pair of host functions each (run, workspace
// bytes), defined in the gemm_sm90_*.cu / gemm_sm80.cu files so that each CUTLASS instantiation
// compiles in a translation unit of its own size. Every function dispatches on p.dtype (bf16,
// fp16) and assumes gemm_supported(p); run returns cudaErrorInvalidValue when CUTLASS rejects
// the problem and cudaErrorInvalidValue / the launch error otherwise.
#pragma once

#include <cuda_runtime_api.h>
#include <cutlass/cutlass.h>

#include <cstddef>

#include "taco/cuda/gemm.h"

namespace taco::cuda::gemm_detail {

using RunFn = cudaError_t (*)(const GemmParams&, cudaStream_t);
using WorkspaceFn = size_t (*)(const GemmParams&);

// Initializes a CUTLASS device operator (workspace, stream) and runs it; a failed status becomes
// the launch error when there is one, else cudaErrorInvalidValue (initialize) or
// cudaErrorLaunchFailure (run).
template <class Op>
cudaError_t initialize_and_run(Op& op, const typename Op::Arguments& args, void* workspace,
                               cudaStream_t stream) {
  if (op.initialize(args, workspace, stream) != cutlass::Status::kSuccess) {
    const cudaError_t err = cudaGetLastError();
    return err != cudaSuccess ? err : cudaErrorInvalidValue;
  }
  if (op.run(stream) != cutlass::Status::kSuccess) {
    const cudaError_t err = cudaGetLastError();
    return err != cudaSuccess ? err : cudaErrorLaunchFailure;
  }
  return cudaGetLastError();
}

struct GemmKernel {
  const char* name;
  bool sm90_only;  // TMA + wgmma: an sm_90a cubin, which runs on compute capability 9.0 only
  RunFn run;
  WorkspaceFn workspace_size;
};

// sm_90a, gemm_sm90_small.cu: decode-sized m (tiles in the swapped problem, n x m x k).
cudaError_t sm90_ws_64x16(const GemmParams& p, cudaStream_t s);
size_t sm90_ws_64x16_workspace(const GemmParams& p);
cudaError_t sm90_pp_64x64(const GemmParams& p, cudaStream_t s);
size_t sm90_pp_64x64_workspace(const GemmParams& p);
// sm_90a, gemm_sm90_mid.cu: a few hundred tokens, one wave of 64 x 128 tiles.
cudaError_t sm90_pp_64x128(const GemmParams& p, cudaStream_t s);
size_t sm90_pp_64x128_workspace(const GemmParams& p);
// sm_90a, gemm_sm90_streamk.cu: large m, tiles just over a whole number of waves.
cudaError_t sm90_sk_128x256(const GemmParams& p, cudaStream_t s);
size_t sm90_sk_128x256_workspace(const GemmParams& p);
// sm_90a, gemm_sm90_large.cu: prefill-sized m.
cudaError_t sm90_coop_128x128(const GemmParams& p, cudaStream_t s);
size_t sm90_coop_128x128_workspace(const GemmParams& p);
cudaError_t sm90_coop_128x256(const GemmParams& p, cudaStream_t s);
size_t sm90_coop_128x256_workspace(const GemmParams& p);
// sm_80 and newer, gemm_sm80.cu.
cudaError_t sm80_64x64(const GemmParams& p, cudaStream_t s);
cudaError_t sm80_128x128(const GemmParams& p, cudaStream_t s);
size_t sm80_workspace(const GemmParams& p);

}  // namespace taco::cuda::gemm_detail
