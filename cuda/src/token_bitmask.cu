// Grammar token bitmasks over logits rows (see taco/cuda/sampling.h): one thread per logit, so a
// warp reads one mask word (a broadcast) and stores its 32 logits in one coalesced transaction;
// ids whose bit is set are not written.
#include <cmath>

#include "common.cuh"
#include "taco/cuda/sampling.h"

namespace taco::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void token_bitmask_kernel(TokenBitmaskParams p) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int32_t mask_row = static_cast<int32_t>(blockIdx.y);
  if (t >= p.vocab) return;
  const auto word = static_cast<uint32_t>(
      p.bitmask[static_cast<int64_t>(mask_row) * p.words + static_cast<int32_t>(t >> 5)]);
  if (!((word >> (t & 31)) & 1u)) {
    p.logits[static_cast<int64_t>(p.rows[mask_row]) * p.logits_stride + t] = -INFINITY;
  }
}

}  // namespace

cudaError_t apply_token_bitmask(const TokenBitmaskParams& p, cudaStream_t stream) {
  if (p.num_rows == 0) return cudaSuccess;
  if (p.num_rows < 0 || p.num_rows > 65535 || p.vocab <= 0 || p.logits_stride < p.vocab ||
      p.words < (p.vocab + 31) / 32 || !p.logits || !p.bitmask || !p.rows) {
    return cudaErrorInvalidValue;
  }
  const dim3 grid(static_cast<unsigned>((p.vocab + kThreads - 1) / kThreads), p.num_rows);
  token_bitmask_kernel<<<grid, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace taco::cuda
