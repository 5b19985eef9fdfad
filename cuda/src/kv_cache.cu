// K/V cache write by slot mapping. One block per token: its threads copy the token's K and V
// rows (num_kv_heads * head_dim elements each) into the slot's row of every head, 16 bytes a
// thread when rows and pointers allow it.
#include "common.cuh"
#include "taco/cuda/kv_cache.h"

namespace taco::cuda {
namespace {

template <typename T, int N>
__global__ void write_kv_kernel(WriteKvParams p) {
  using P = Pack<T, N>;
  const int64_t t = blockIdx.x;
  const int64_t slot = p.slot_mapping[t];
  if (slot < 0 || slot >= p.num_blocks * p.block_size) return;
  const int64_t block = slot / p.block_size, row = slot % p.block_size;
  const int64_t packs_per_head = p.head_dim / N;
  // Offsets in packs: kv is [2, blocks, heads, block_size, head_dim], a half is blocks * ... packs.
  const int64_t half = p.num_blocks * p.num_kv_heads * p.block_size * packs_per_head;
  const int64_t base = (block * p.num_kv_heads * p.block_size + row) * packs_per_head;
  const int64_t head_stride = p.block_size * packs_per_head;
  const P* k = reinterpret_cast<const P*>(static_cast<const T*>(p.key) + t * p.key_stride);
  const P* v = reinterpret_cast<const P*>(static_cast<const T*>(p.value) + t * p.value_stride);
  P* kc = static_cast<P*>(p.kv);
  for (int64_t i = threadIdx.x; i < p.num_kv_heads * packs_per_head; i += blockDim.x) {
    const int64_t h = i / packs_per_head, d = i % packs_per_head;
    const int64_t dst = base + h * head_stride + d;
    kc[dst] = k[i];
    kc[half + dst] = v[i];
  }
}

template <typename T, int N>
cudaError_t launch(const WriteKvParams& p, cudaStream_t stream) {
  const int64_t packs = p.num_kv_heads * p.head_dim / N;
  const int threads = packs >= 256 ? 256 : static_cast<int>(ceil_div(packs, 32) * 32);
  write_kv_kernel<T, N><<<static_cast<unsigned>(p.tokens), threads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t write_kv_cache(const WriteKvParams& p, cudaStream_t stream) {
  if (p.tokens == 0) return cudaSuccess;
  if (!p.check().empty()) return cudaErrorInvalidValue;
  // 8-bit caches are built for the CPU kernels only.
  if (p.cache_type != kernels::KvCacheType::kModel) return cudaErrorInvalidValue;
  return dispatch(p.dtype, [&]<typename T>() {
    constexpr int n = kVec<T>;
    const bool vec = p.head_dim % n == 0 && p.key_stride % n == 0 && p.value_stride % n == 0 &&
                     aligned16(p.key) && aligned16(p.value) && aligned16(p.kv);
    return vec ? launch<T, n>(p, stream) : launch<T, 1>(p, stream);
  });
}

}  // namespace taco::cuda
