// SiLU-and-mul params: the gated MLP activation of Llama-family models.
#pragma once

#include <cstdint>
#include <string>

#include "taco/kernels/check.h"
#include "taco/kernels/dtype.h"

namespace taco::kernels {

struct SiluAndMulParams {
  void* out = nullptr;      // [tokens, inter] dtype contiguous
  const void* x = nullptr;  // [tokens, 2 * inter] dtype: gate in the first half, up in the second;
                            //   row stride x_stride elements
  int64_t tokens = 0;
  int64_t inter = 0;
  int64_t x_stride = 0;  // >= 2 * inter
  DType dtype = DType::kBFloat16;

  std::string check() const {
    using namespace detail;
    constexpr const char* w = "SiluAndMulParams";
    return first_error(
        require(tokens >= 0, w, "tokens", tokens, "must be >= 0"),
        require(inter > 0, w, "inter", inter, "must be > 0"),
        require(x_stride >= 2 * inter, w, "x_stride", x_stride, "must be >= 2 * inter"),
        tokens > 0 ? require_ptr(out, w, "out") : std::string(),
        tokens > 0 ? require_ptr(x, w, "x") : std::string());
  }
};

}  // namespace taco::kernels
