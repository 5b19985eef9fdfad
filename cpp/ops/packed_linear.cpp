// The two oneDNN ops torch's own CPU freezing path uses (mkldnn::_reorder_linear_weight and
// mkldnn::_linear_pointwise), looked up once in the dispatcher: ATen has no C++ header for them.
#include "ops/packed_linear.h"

#include <ATen/Config.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cstdlib>
#include <cstring>
#include <optional>

namespace taco::ops {
namespace {

bool packing_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("TACO_GEMM");
    return !(v && std::strcmp(v, "aten") == 0) && at::hasMKLDNN() &&
           __builtin_cpu_supports("avx512bf16");
  }();
  return enabled;
}

}  // namespace

at::Tensor pack_linear_weight(const at::Tensor& weight, int64_t batch_hint) {
  if (!weight.device().is_cpu() || weight.scalar_type() != at::kBFloat16 || weight.dim() != 2 ||
      !packing_enabled()) {
    return {};
  }
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("mkldnn::_reorder_linear_weight", "")
                             .typed<at::Tensor(const at::Tensor&, std::optional<int64_t>)>();
  return op.call(weight.contiguous(), batch_hint);
}

at::Tensor packed_linear(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& bias) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                            c10::string_view, c10::List<std::optional<at::Scalar>>,
                            std::optional<c10::string_view>)>();
  const std::optional<at::Tensor> b = bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt;
  return op.call(x.contiguous(), packed, b, "none", c10::List<std::optional<at::Scalar>>(),
                 std::nullopt);
}

}  // namespace taco::ops
