// Element types of the kernels, shared by the CPU and CUDA backends. Entry points are plain
// (non-template) functions so that callers compiled without nvcc or torch can use them; the dtype
// travels in the params.
#pragma once

#include <cstdint>

namespace taco::kernels {

enum class DType { kFloat32, kFloat16, kBFloat16 };

constexpr const char* dtype_name(DType d) {
  switch (d) {
    case DType::kFloat32:
      return "float32";
    case DType::kFloat16:
      return "float16";
    case DType::kBFloat16:
      return "bfloat16";
  }
  return "unknown";
}

constexpr int64_t dtype_size(DType d) { return d == DType::kFloat32 ? 4 : 2; }

}  // namespace taco::kernels
