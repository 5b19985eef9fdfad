// The element types every kernel test runs over, with the tolerance each one allows.
#pragma once

#include <gtest/gtest.h>

#include <utility>

#include "cuda_test_util.h"

namespace taco::cuda::testing {

using ElementTypes = ::testing::Types<float, __half, __nv_bfloat16>;

// (atol, rtol) for values of order 1 that went through a few rounding steps in T, plus the
// fast-math exp / rsqrt the kernels are built with.
template <typename T>
std::pair<double, double> tolerance() {
  if constexpr (std::is_same_v<T, float>)
    return {2e-5, 1e-4};
  else if constexpr (std::is_same_v<T, __half>)
    return {4e-3, 4e-3};
  else
    return {2.5e-2, 2.5e-2};
}

struct TypeNames {
  template <typename T>
  static std::string GetName(int) {
    return dtype_name<T>();
  }
};

}  // namespace taco::cuda::testing
