// Small float helpers the CPU kernels share. Loops are written with independent lanes so that
// GCC vectorizes them at -O3 -march=native without -ffast-math (no reassociation needed).
#pragma once

#include "cpu/isa.h"

#include "cpu/half.h"

#include <cstdint>

namespace taco::cpu {
inline namespace TACO_CPU_NS {

template <typename T>
inline float to_float(T x) {
  return static_cast<float>(x);
}

template <typename T>
inline T from_float(float x) {
  return static_cast<T>(x);
}

// dst[0..n) = float(src[0..n)).
template <typename T>
inline void load_float(float* __restrict dst, const T* __restrict src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = to_float(src[i]);
}

// Sum of a[i] * b[i] over 16 interleaved partial sums.
inline float dot(const float* __restrict a, const float* __restrict b, int64_t n) {
  constexpr int kLanes = 16;
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += a[i + l] * b[i + l];
  }
  float s = 0.0f;
  for (; i < n; ++i) s += a[i] * b[i];
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

// y[i] = y[i] * scale + w * x[i].
inline void scale_axpy(float* __restrict y, float scale, float w, const float* __restrict x,
                       int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = y[i] * scale + w * x[i];
}

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
