#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC bug 105593, see cpu/vec_avx512.h

#include "cpu/norm.h"
#include "cpu/isa.h"

#include "cpu/parallel.h"

#include <cmath>
#include <vector>

#include "cpu/dispatch.h"
#include "cpu/vec.h"
#include "cpu/vec_avx512.h"

namespace taco::cpu {
inline namespace TACO_CPU_NS {
namespace {

// Normalizes one row held in float (row[hidden]) into out: out = round(round(row * inv) * w).
template <typename T>
void normalize_row(T* out, const float* row, const T* w, int64_t hidden, float eps) {
  const float inv = 1.0f / std::sqrt(dot(row, row, hidden) / static_cast<float>(hidden) + eps);
  int64_t i = 0;
#ifdef __AVX512F__
  const __m512 inv16 = _mm512_set1_ps(inv);
  for (; i + 16 <= hidden; i += 16) {
    const __m512 normed = avx512::round_to<T>(_mm512_mul_ps(_mm512_loadu_ps(row + i), inv16));
    avx512::store16(out + i, _mm512_mul_ps(normed, avx512::load16(w + i)));
  }
#endif
  for (; i < hidden; ++i) {
    const float normed = to_float(from_float<T>(row[i] * inv));
    out[i] = from_float<T>(normed * to_float(w[i]));
  }
}

// res = round(res + x) (the residual stream stays in the model dtype, as in HF); row = res.
template <typename T>
void add_residual(T* res, float* row, const T* x, int64_t hidden) {
  int64_t i = 0;
#ifdef __AVX512F__
  for (; i + 16 <= hidden; i += 16) {
    const __m512 sum = _mm512_add_ps(avx512::load16(res + i), avx512::load16(x + i));
    avx512::store16(res + i, sum);
    _mm512_storeu_ps(row + i, avx512::round_to<T>(sum));
  }
#endif
  for (; i < hidden; ++i) {
    res[i] = from_float<T>(to_float(res[i]) + to_float(x[i]));
    row[i] = to_float(res[i]);
  }
}

template <typename T>
void rms_norm_impl(const RmsNormParams& p) {
  parallel_for(0, p.tokens, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> row(p.hidden);
    for (int64_t t = begin; t < end; ++t) {
      load_float(row.data(), static_cast<const T*>(p.x) + t * p.x_stride, p.hidden);
      normalize_row(static_cast<T*>(p.out) + t * p.out_stride, row.data(),
                    static_cast<const T*>(p.weight), p.hidden, p.eps);
    }
  });
}

template <typename T>
void fused_add_rms_norm_impl(const RmsNormParams& p) {
  parallel_for(0, p.tokens, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> row(p.hidden);
    for (int64_t t = begin; t < end; ++t) {
      add_residual(static_cast<T*>(p.residual) + t * p.hidden, row.data(),
                   static_cast<const T*>(p.x) + t * p.x_stride, p.hidden);
      normalize_row(static_cast<T*>(p.out) + t * p.out_stride, row.data(),
                    static_cast<const T*>(p.weight), p.hidden, p.eps);
    }
  });
}

}  // namespace

void rms_norm(const RmsNormParams& p) {
  throw_if(p.check(), "rms_norm");
  dispatch(p.dtype, [&]<typename T>() { rms_norm_impl<T>(p); });
}

void fused_add_rms_norm(const RmsNormParams& p) {
  throw_if(p.check(/*fused=*/true), "fused_add_rms_norm");
  dispatch(p.dtype, [&]<typename T>() { fused_add_rms_norm_impl<T>(p); });
}

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
