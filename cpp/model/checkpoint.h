// What model builders read weights through, by HF tensor name: a safetensors directory
// (safetensors.h), a GGUF file (gguf_checkpoint.h), an AWQ / GPTQ directory (group_quant.h) or an
// FP8 one (fp8_checkpoint.h).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ops/linear.h"

namespace taco {

class Checkpoint {
 public:
  virtual ~Checkpoint() = default;

  virtual bool has(const std::string& name) const = 0;
  // Throws std::invalid_argument naming the tensor when absent.
  virtual std::vector<int64_t> shape(const std::string& name) const = 0;
  // A contiguous CPU copy in dtype (float32, bfloat16 or float16), dequantized when the tensor is
  // stored quantized. Throws std::invalid_argument naming the tensor when absent or stored in a
  // type this build cannot read.
  virtual at::Tensor load(const std::string& name, at::ScalarType dtype) const = 0;
  // The stored blocks when the tensor is block-quantized in a type the quantized linears take;
  // nullopt when it is stored as floats.
  virtual std::optional<ops::QuantizedRows> quantized(const std::string& /*name*/) const {
    return std::nullopt;
  }
  // The E4M3 codes and per-row scales when the tensor is an FP8 projection weight (stored so, or
  // quantized at load); nullopt otherwise.
  virtual std::optional<ops::Fp8Rows> fp8(const std::string& /*name*/) const {
    return std::nullopt;
  }
};

}  // namespace taco
