// Element types of the CUDA kernels: the kernel contract's (taco/kernels/dtype.h).
#pragma once

#include "taco/kernels/dtype.h"

namespace taco::cuda {

using kernels::DType;

}  // namespace taco::cuda
