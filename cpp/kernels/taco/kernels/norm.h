// RMSNorm params, HF-faithful on every backend: statistics in float32, the normalized value
// rounded to the model dtype before the weight multiply (transformers' LlamaRMSNorm).
#pragma once

#include <cstdint>
#include <string>

#include "taco/kernels/check.h"
#include "taco/kernels/dtype.h"

namespace taco::kernels {

struct RmsNormParams {
  void* out = nullptr;           // [tokens, hidden] dtype, row stride out_stride elements
  const void* x = nullptr;       // [tokens, hidden] dtype, row stride x_stride elements
  void* residual = nullptr;      // fused variant only: [tokens, hidden] dtype contiguous, updated
                                 //   to x + residual
  const void* weight = nullptr;  // [hidden] dtype
  int64_t tokens = 0;
  int64_t hidden = 0;
  int64_t out_stride = 0;  // >= hidden
  int64_t x_stride = 0;    // >= hidden
  float eps = 1e-6f;
  DType dtype = DType::kBFloat16;

  // fused: the fused_add_rms_norm variant, which needs residual.
  std::string check(bool fused = false) const {
    using namespace detail;
    constexpr const char* w = "RmsNormParams";
    return first_error(
        require(tokens >= 0, w, "tokens", tokens, "must be >= 0"),
        require(hidden > 0, w, "hidden", hidden, "must be > 0"),
        require(out_stride >= hidden, w, "out_stride", out_stride, "must be >= hidden"),
        require(x_stride >= hidden, w, "x_stride", x_stride, "must be >= hidden"),
        tokens > 0 ? require_ptr(out, w, "out") : std::string(),
        tokens > 0 ? require_ptr(x, w, "x") : std::string(), require_ptr(weight, w, "weight"),
        fused && tokens > 0 ? require_ptr(residual, w, "residual") : std::string());
  }
};

}  // namespace taco::kernels
