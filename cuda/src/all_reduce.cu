#include <algorithm>

#include "common.cuh"
#include "taco/cuda/all_reduce.h"

namespace taco::cuda {

namespace {

constexpr int kThreads = 512;

__device__ __forceinline__ void store_release(uint32_t* p, uint32_t v) {
  asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

__device__ __forceinline__ uint32_t load_acquire(const uint32_t* p) {
  uint32_t v;
  asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Block b of every rank reaches this point (see all_reduce.h). which: 0 start, 1 middle, 2 end.
// A peer that never arrives (its process died) aborts the kernel after p.timeout_ns: the launch
// fails with an error instead of spinning forever.
__device__ void barrier(const AllReduceParams& p, int which, uint32_t flag) {
  // Every thread's writes (the middle barrier: its reduced part) and reads (the end barrier: of
  // the peers' buffers) of this block are done before any peer is told so.
  if (which != 0) __syncthreads();
  if (threadIdx.x < p.world) {
    const int peer = threadIdx.x;
    auto slot = [&](AllReduceSignal* s, int from) -> uint32_t* {
      return which == 0   ? &s->start[blockIdx.x][from]
             : which == 1 ? &s->middle[blockIdx.x][from]
                          : &s->end[blockIdx.x][from];
    };
    __threadfence_system();
    store_release(slot(p.signals[peer], p.rank), flag);
    const uint32_t* mine = slot(p.signals[p.rank], peer);
    const uint64_t start = global_ns();
    uint32_t spins = 0;
    while (load_acquire(mine) != flag) {
      if (++spins % 1024 == 0 && p.timeout_ns > 0 && global_ns() - start > p.timeout_ns) {
        __trap();
      }
    }
  }
  __syncthreads();
}

// 16 bytes of T as floats.
template <typename T>
struct Packet {
  static constexpr int N = kVec<T>;
  __device__ static void add(float* acc, const uint4& raw) {
    const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < N; ++i) acc[i] += to_float(v[i]);
  }
  __device__ static uint4 pack(const float* acc) {
    uint4 raw;
    T* v = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int i = 0; i < N; ++i) v[i] = from_float<T>(acc[i]);
    return raw;
  }
};

// Sums packets [begin, end) of every rank's staging buffer into dst, rank by rank.
template <typename T>
__device__ void reduce_range(const AllReduceParams& p, uint4* dst, int64_t begin, int64_t end) {
  using P = Packet<T>;
  for (int64_t i = begin + blockIdx.x * blockDim.x + threadIdx.x; i < end;
       i += int64_t{gridDim.x} * blockDim.x) {
    float acc[P::N] = {};
    for (int r = 0; r < p.world; ++r) {
      P::add(acc, __ldcg(reinterpret_cast<const uint4*>(p.buffers[r]) + i));
    }
    dst[i] = P::pack(acc);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) all_reduce_kernel(AllReduceParams p) {
  const int64_t packets = p.bytes / 16;
  // This call's number for block b; only this block touches counter[b] of this rank.
  const uint32_t flag = p.signals[p.rank]->counter[blockIdx.x] + 1;
  barrier(p, 0, flag);
  if (!p.two_shot) {
    reduce_range<T>(p, reinterpret_cast<uint4*>(p.out), 0, packets);
  } else {
    const int64_t part = (packets + p.world - 1) / p.world;
    const int64_t begin = min(packets, part * p.rank), end = min(packets, begin + part);
    reduce_range<T>(p, reinterpret_cast<uint4*>(p.buffers[p.rank]), begin, end);
    barrier(p, 1, flag);
    for (int r = 0; r < p.world; ++r) {
      const int64_t b = min(packets, part * r), e = min(packets, b + part);
      const uint4* src = reinterpret_cast<const uint4*>(p.buffers[r]);
      uint4* dst = reinterpret_cast<uint4*>(p.out);
      for (int64_t i = b + blockIdx.x * blockDim.x + threadIdx.x; i < e;
           i += int64_t{gridDim.x} * blockDim.x) {
        dst[i] = __ldcg(src + i);
      }
    }
  }
  barrier(p, 2, flag);
  if (threadIdx.x == 0) p.signals[p.rank]->counter[blockIdx.x] = flag;
}

}  // namespace

const char* all_reduce_check(const AllReduceParams& p) {
  if (p.world < 2 || p.world > kMaxAllReduceRanks) return "AllReduceParams: world not in [2, 8]";
  if (p.rank < 0 || p.rank >= p.world) return "AllReduceParams: rank out of range";
  for (int r = 0; r < p.world; ++r) {
    if (p.buffers[r] == nullptr || p.signals[r] == nullptr) {
      return "AllReduceParams: a rank's buffer or signal is null";
    }
    if (!aligned16(p.buffers[r])) return "AllReduceParams: a staging buffer is not 16-aligned";
  }
  if (p.bytes <= 0 || p.bytes % 16 != 0)
    return "AllReduceParams: bytes not a positive multiple of 16";
  if (p.bytes > p.capacity) return "AllReduceParams: bytes exceed the staging capacity";
  if (p.in == nullptr || p.out == nullptr || !aligned16(p.out)) {
    return "AllReduceParams: in / out null or out not 16-aligned";
  }
  return "";
}

cudaError_t all_reduce(const AllReduceParams& p, cudaStream_t stream) {
  if (*all_reduce_check(p) != '\0') return cudaErrorInvalidValue;
  if (p.in != p.buffers[p.rank]) {
    const cudaError_t err =
        cudaMemcpyAsync(p.buffers[p.rank], p.in, p.bytes, cudaMemcpyDeviceToDevice, stream);
    if (err != cudaSuccess) return err;
  }
  const int64_t packets = p.bytes / 16;
  const int blocks = static_cast<int>(
      std::min<int64_t>(kMaxAllReduceBlocks, std::max<int64_t>(1, ceil_div(packets, kThreads))));
  return dispatch(p.dtype, [&]<typename T>() {
    all_reduce_kernel<T><<<blocks, kThreads, 0, stream>>>(p);
    return cudaGetLastError();
  });
}

}  // namespace taco::cuda
