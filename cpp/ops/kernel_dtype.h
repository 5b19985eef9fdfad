// The kernel contract's dtype of a tensor, and its params check as a torch error.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "taco/kernels/dtype.h"

namespace taco::ops {

// float32 / float16 / bfloat16; any other dtype fails naming the op.
inline kernels::DType kernel_dtype(const at::Tensor& t, const char* op) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return kernels::DType::kFloat32;
    case at::kHalf:
      return kernels::DType::kFloat16;
    case at::kBFloat16:
      return kernels::DType::kBFloat16;
    default:
      TORCH_CHECK(false, op, ": dtype ", t.scalar_type(),
                  " is not supported (float32, bfloat16, float16)");
  }
}

// A params struct's check() message (empty when usable) as a torch error naming the op.
inline void check_params(const std::string& message, const char* op) {
  TORCH_CHECK(message.empty(), op, ": ", message);
}

}  // namespace taco::ops
