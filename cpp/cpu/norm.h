// RMSNorm kernels, HF-faithful: statistics in float32, the normalized value rounded to the
// model dtype before the weight multiply (as transformers' LlamaRMSNorm does).
#pragma once

#include <cstdint>

namespace taco::cpu {

struct RmsNormParams {
  void* out;             // [tokens, hidden], row stride out_stride
  const void* x;         // [tokens, hidden], row stride x_stride
  void* residual;        // fused variant only: [tokens, hidden] contiguous, updated to x + residual
  const void* weight;    // [hidden]
  int64_t tokens = 0;
  int64_t hidden = 0;
  int64_t out_stride = 0;
  int64_t x_stride = 0;
  float eps = 1e-6f;
};

// out = x / rms(x) * weight.
template <typename T>
void rms_norm(const RmsNormParams& p);

// residual += x; out = rms_norm(residual) * weight (out may alias x).
template <typename T>
void fused_add_rms_norm(const RmsNormParams& p);

}  // namespace taco::cpu
