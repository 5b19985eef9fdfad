// Element types of the CUDA kernels. The entry points are plain (non-template) host functions so
// that callers compiled without nvcc (cpp/ops) can use them; the dtype travels in the params.
#pragma once

namespace taco::cuda {

enum class DType { kFloat32, kFloat16, kBFloat16 };

}  // namespace taco::cuda
