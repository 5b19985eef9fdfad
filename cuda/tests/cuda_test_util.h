// Host-side helpers for the CUDA kernel tests and benches: device detection, RAII device
// buffers, host conversions of the element types, random inputs and NaN poison. Torch-free.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "taco/cuda/dtype.h"

namespace taco::cuda::testing {

// True when a CUDA device is usable; a machine without a driver reports an error, not 0.
inline bool device_available() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// Benches start here: the device's line, or a skip line and false when there is no device.
inline bool announce_device() {
  if (!device_available()) {
    std::printf("bench skipped: no CUDA device\n");
    return false;
  }
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  std::printf("device %s, %d SMs\n", prop.name, prop.multiProcessorCount);
  return true;
}

template <typename T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>)
    return DType::kFloat32;
  else if constexpr (std::is_same_v<T, __half>)
    return DType::kFloat16;
  else
    return DType::kBFloat16;
}

template <typename T>
const char* dtype_name() {
  if constexpr (std::is_same_v<T, float>)
    return "float32";
  else if constexpr (std::is_same_v<T, __half>)
    return "float16";
  else
    return "bfloat16";
}

inline float to_f(float x) { return x; }
inline float to_f(__half x) { return __half2float(x); }
inline float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
T from_f(float x) {
  if constexpr (std::is_same_v<T, float>)
    return x;
  else if constexpr (std::is_same_v<T, __half>)
    return __float2half_rn(x);
  else
    return __float2bfloat16_rn(x);
}

// The value x takes once stored as T.
template <typename T>
float round_to(float x) {
  return to_f(from_f<T>(x));
}

template <typename T>
T nan_value() {
  return from_f<T>(std::numeric_limits<float>::quiet_NaN());
}

// Normal(0, 1) values already rounded to T, so references see exactly what the kernel sees.
template <typename T>
std::vector<T> random_vector(size_t n, std::mt19937& rng, float stddev = 1.0f) {
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<T> v(n);
  for (auto& x : v) x = from_f<T>(dist(rng));
  return v;
}

// Owns n elements of T in device memory.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (n_ > 0) check(cudaMalloc(&ptr_, n_ * sizeof(T)), "cudaMalloc");
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void upload(const std::vector<T>& host) {
    if (host.size() != n_) throw std::invalid_argument("DeviceBuffer::upload: size mismatch");
    check(cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    check(cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost), "download");
    return host;
  }
  T* get() const { return static_cast<T*>(ptr_); }
  size_t size() const { return n_; }

 private:
  size_t n_ = 0;
  void* ptr_ = nullptr;
};

// |got - want| <= atol + rtol * |want|, and never NaN.
inline bool close(double got, double want, double atol, double rtol) {
  return !std::isnan(got) && std::fabs(got - want) <= atol + rtol * std::fabs(want);
}

}  // namespace taco::cuda::testing

// Skips the current test when no CUDA device is visible (the CI build machine).
#define TACO_REQUIRE_GPU()                                                            \
  do {                                                                                \
    if (!::taco::cuda::testing::device_available()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

// Fails the test with the CUDA error string.
#define TACO_CUDA_OK(expr)                                                               \
  do {                                                                                   \
    const cudaError_t taco_err_ = (expr);                                                \
    ASSERT_EQ(taco_err_, cudaSuccess) << #expr << ": " << cudaGetErrorString(taco_err_); \
  } while (0)

// After a launch: the launch's own error, then the kernel's (synchronizing).
#define TACO_CUDA_LAUNCH_OK(expr)          \
  do {                                     \
    TACO_CUDA_OK(expr);                    \
    TACO_CUDA_OK(cudaDeviceSynchronize()); \
  } while (0)
