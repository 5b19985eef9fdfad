#include "cpu/norm.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

#include "cpu/vec.h"

namespace taco::cpu {
namespace {

// Normalizes one row held in float (row[hidden]) into out.
template <typename T>
void normalize_row(T* out, const float* row, const T* w, int64_t hidden, float eps) {
  const float inv = 1.0f / std::sqrt(dot(row, row, hidden) / static_cast<float>(hidden) + eps);
  for (int64_t i = 0; i < hidden; ++i) {
    const float normed = to_float(from_float<T>(row[i] * inv));
    out[i] = from_float<T>(normed * to_float(w[i]));
  }
}

}  // namespace

template <typename T>
void rms_norm(const RmsNormParams& p) {
  at::parallel_for(0, p.tokens, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> row(p.hidden);
    for (int64_t t = begin; t < end; ++t) {
      load_float(row.data(), static_cast<const T*>(p.x) + t * p.x_stride, p.hidden);
      normalize_row(static_cast<T*>(p.out) + t * p.out_stride, row.data(),
                    static_cast<const T*>(p.weight), p.hidden, p.eps);
    }
  });
}

template <typename T>
void fused_add_rms_norm(const RmsNormParams& p) {
  at::parallel_for(0, p.tokens, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> row(p.hidden);
    for (int64_t t = begin; t < end; ++t) {
      const T* x = static_cast<const T*>(p.x) + t * p.x_stride;
      T* res = static_cast<T*>(p.residual) + t * p.hidden;
      for (int64_t i = 0; i < p.hidden; ++i) {
        // The sum is rounded to the model dtype, as the residual stream is in HF.
        res[i] = from_float<T>(to_float(res[i]) + to_float(x[i]));
        row[i] = to_float(res[i]);
      }
      normalize_row(static_cast<T*>(p.out) + t * p.out_stride, row.data(),
                    static_cast<const T*>(p.weight), p.hidden, p.eps);
    }
  });
}

#define TACO_INSTANTIATE(T)                                \
  template void rms_norm<T>(const RmsNormParams&);         \
  template void fused_add_rms_norm<T>(const RmsNormParams&);
TACO_INSTANTIATE(float)
TACO_INSTANTIATE(c10::BFloat16)
TACO_INSTANTIATE(c10::Half)
#undef TACO_INSTANTIATE

}  // namespace taco::cpu
