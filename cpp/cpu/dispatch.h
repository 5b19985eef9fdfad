// Dtype dispatch and params checks at the CPU kernels' entry points.
#pragma once

#include "cpu/isa.h"

#include <stdexcept>
#include <string>

#include "cpu/half.h"
#include "taco/kernels/dtype.h"

namespace taco::cpu {
inline namespace TACO_CPU_NS {

// Throws std::invalid_argument with `op: message` unless message is empty (a params check()).
inline void throw_if(const std::string& message, const char* op) {
  if (!message.empty()) throw std::invalid_argument(std::string(op) + ": " + message);
}

// Calls fn.template operator()<T>() with T the element type of dtype.
template <typename Fn>
void dispatch(kernels::DType dtype, Fn&& fn) {
  switch (dtype) {
    case kernels::DType::kFloat32:
      return fn.template operator()<float>();
    case kernels::DType::kBFloat16:
      return fn.template operator()<bf16>();
    case kernels::DType::kFloat16:
      return fn.template operator()<fp16>();
  }
  throw std::invalid_argument("unknown dtype");
}

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
