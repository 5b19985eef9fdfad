// Device memory facts for sizing the KV cache: what the device holds and what torch's caching
// allocator handed out at its peak. CUDA devices only (CUDA builds); CPU callers size by GiB.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace taco::ops {

struct DeviceMemory {
  int64_t free_bytes = 0;   // free on the device now (cudaMemGetInfo), any process's use excluded
  int64_t total_bytes = 0;  // the device's capacity
};

// True when this build has the CUDA backend and device 0 is an NVIDIA GPU of compute
// capability 8.0 or newer (what the kernels are built for).
bool cuda_available();

// Whether the CUDA attention kernels take this head size (false without the CUDA backend).
bool cuda_head_dim_supported(int64_t head_dim);

DeviceMemory device_memory(const at::Device& device);

// Bytes the caching allocator has handed out now, and at its peak since reset_peak_memory.
int64_t allocated_bytes(const at::Device& device);
int64_t peak_allocated_bytes(const at::Device& device);
void reset_peak_memory(const at::Device& device);

// Waits for the device's work (profiling reads peaks after the forward has really run).
void synchronize(const at::Device& device);

// Returns cached, unused allocator blocks to the device so cudaMemGetInfo sees them as free.
void release_cached_memory();

}  // namespace taco::ops
