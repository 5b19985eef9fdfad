// A Checkpoint held in memory for model tests: named float tensors, and optionally the
// block-quantized or FP8 form of some of them.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "model/checkpoint.h"

namespace taco::test {

class MemoryCheckpoint : public Checkpoint {
 public:
  std::map<std::string, at::Tensor> tensors;
  std::map<std::string, ops::QuantizedRows> quant;
  std::map<std::string, ops::Fp8Rows> fp8s;

  bool has(const std::string& n) const override { return tensors.count(n) > 0; }
  std::vector<int64_t> shape(const std::string& n) const override {
    return tensors.at(n).sizes().vec();
  }
  at::Tensor load(const std::string& n, at::ScalarType dtype) const override {
    return tensors.at(n).to(dtype).contiguous();
  }
  std::optional<ops::QuantizedRows> quantized(const std::string& n) const override {
    auto it = quant.find(n);
    return it == quant.end() ? std::nullopt : std::optional(it->second);
  }
  std::optional<ops::Fp8Rows> fp8(const std::string& n) const override {
    auto it = fp8s.find(n);
    return it == fp8s.end() ? std::nullopt : std::optional(it->second);
  }
};

}  // namespace taco::test
