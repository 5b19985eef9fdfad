#include "ops/device_memory.h"

#if TACO_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime.h>

#include "taco/cuda/attention.h"
#endif

namespace taco::ops {

#if TACO_WITH_CUDA

namespace {

using Stat = c10::CachingAllocator::StatType;
constexpr auto kAggregate = static_cast<size_t>(Stat::AGGREGATE);

void check(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, what, ": ", cudaGetErrorString(err));
}

}  // namespace

// The kernels are built for sm_80 and sm_90a (bf16 needs sm_80 too).
bool cuda_available() {
  if (c10::cuda::device_count() == 0) return false;
  cudaDeviceProp prop{};
  return cudaGetDeviceProperties(&prop, 0) == cudaSuccess && prop.major >= 8;
}

bool cuda_head_dim_supported(int64_t head_dim) {
  return cuda::paged_attention_head_dim_supported(head_dim);
}

DeviceMemory device_memory(const at::Device& device) {
  const c10::cuda::CUDAGuard guard(device);
  size_t free = 0, total = 0;
  check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
  return {static_cast<int64_t>(free), static_cast<int64_t>(total)};
}

int64_t allocated_bytes(const at::Device& device) {
  return c10::cuda::CUDACachingAllocator::getDeviceStats(device.index())
      .allocated_bytes[kAggregate]
      .current;
}

int64_t peak_allocated_bytes(const at::Device& device) {
  return c10::cuda::CUDACachingAllocator::getDeviceStats(device.index())
      .allocated_bytes[kAggregate]
      .peak;
}

void reset_peak_memory(const at::Device& device) {
  c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
}

void synchronize(const at::Device& device) {
  const c10::cuda::CUDAGuard guard(device);
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}

void release_cached_memory() { c10::cuda::CUDACachingAllocator::emptyCache(); }

#else

bool cuda_available() { return false; }

bool cuda_head_dim_supported(int64_t) { return false; }

DeviceMemory device_memory(const at::Device& device) {
  TORCH_CHECK(false, "device_memory: no CUDA backend in this build (", device, ")");
}
int64_t allocated_bytes(const at::Device&) { return 0; }
int64_t peak_allocated_bytes(const at::Device&) { return 0; }
void reset_peak_memory(const at::Device&) {}
void synchronize(const at::Device&) {}
void release_cached_memory() {}

#endif

}  // namespace taco::ops
