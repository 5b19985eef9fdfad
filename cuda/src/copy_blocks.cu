// Copy-on-write block copies inside the device KV caches of every layer, one launch.
// Grid: (pair, layer, half); each block copies block_bytes bytes, 16 bytes a thread when the
// layer's base and the block size allow it (checked per block: the bases live in device memory).
#include "common.cuh"
#include "taco/cuda/kv_cache.h"

namespace taco::cuda {
namespace {

template <typename U>
__device__ void copy_units(U* base, const CopyBlocksParams& p, int64_t pair, int64_t half) {
  const int64_t units = p.block_bytes / static_cast<int64_t>(sizeof(U));
  base += half * p.num_blocks * units;
  const U* src = base + p.pairs[2 * pair] * units;
  U* dst = base + p.pairs[2 * pair + 1] * units;
  for (int64_t i = threadIdx.x; i < units; i += blockDim.x) dst[i] = src[i];
}

__global__ void copy_blocks_kernel(CopyBlocksParams p) {
  const int64_t pair = blockIdx.x, layer = blockIdx.y, half = blockIdx.z;
  void* base = p.kv_layers[layer];
  if (p.block_bytes % 16 == 0 && reinterpret_cast<uintptr_t>(base) % 16 == 0) {
    copy_units(static_cast<uint4*>(base), p, pair, half);
  } else {
    copy_units(static_cast<uint8_t*>(base), p, pair, half);
  }
}

}  // namespace

cudaError_t copy_blocks(const CopyBlocksParams& p, cudaStream_t stream) {
  if (p.num_pairs == 0 || p.num_layers == 0) return cudaSuccess;
  if (p.num_layers > 65535) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(p.num_pairs), static_cast<unsigned>(p.num_layers), 2);
  copy_blocks_kernel<<<grid, 256, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace taco::cuda
