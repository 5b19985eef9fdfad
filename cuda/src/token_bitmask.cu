// Grammar token bitmasks over logits rows (see taco/cuda/sampling.h): each thread reads one
// 32-bit word of a mask and writes -inf to the logits of the cleared bits, so a row costs one
// pass over the masked entries and no other memory traffic.
#include <cmath>

#include "common.cuh"
#include "taco/cuda/sampling.h"

namespace taco::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void token_bitmask_kernel(TokenBitmaskParams p) {
  const int32_t word = static_cast<int32_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int32_t mask_row = static_cast<int32_t>(blockIdx.y);
  const int64_t first = static_cast<int64_t>(word) * 32;
  if (word >= p.words || first >= p.vocab) return;
  const uint32_t bits =
      static_cast<uint32_t>(p.bitmask[static_cast<int64_t>(mask_row) * p.words + word]);
  if (bits == 0xffffffffu) return;
  float* row = p.logits + static_cast<int64_t>(p.rows[mask_row]) * p.logits_stride;
  const int64_t left = p.vocab - first;
  const int count = left < 32 ? static_cast<int>(left) : 32;
  for (int b = 0; b < count; ++b) {
    if (!((bits >> b) & 1u)) row[first + b] = -INFINITY;
  }
}

}  // namespace

cudaError_t apply_token_bitmask(const TokenBitmaskParams& p, cudaStream_t stream) {
  if (p.num_rows == 0) return cudaSuccess;
  if (p.num_rows < 0 || p.num_rows > 65535 || p.vocab <= 0 || p.logits_stride < p.vocab ||
      p.words < (p.vocab + 31) / 32 || !p.logits || !p.bitmask || !p.rows) {
    return cudaErrorInvalidValue;
  }
  const dim3 grid((p.words + kThreads - 1) / kThreads, p.num_rows);
  token_bitmask_kernel<<<grid, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace taco::cuda
