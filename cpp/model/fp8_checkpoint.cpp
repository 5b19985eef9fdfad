#include "model/fp8_checkpoint.h"

#include <stdexcept>

#include "taco/kernels/fp8.h"

namespace taco {

namespace {

// A decoder layer's projection: "model.layers.<i>.<block>.<name>_proj.weight".
bool is_projection(const std::string& name) {
  return name.starts_with("model.layers.") && name.ends_with("_proj.weight");
}

}  // namespace

Fp8Checkpoint::Fp8Checkpoint(WeightStore store, bool quantize)
    : store_(std::move(store)), quantize_(quantize) {}

bool Fp8Checkpoint::stored_fp8(const std::string& name) const {
  return store_.has(name) && store_.entry(name).dtype == "F8_E4M3";
}

at::Tensor Fp8Checkpoint::load(const std::string& name, at::ScalarType dtype) const {
  if (!stored_fp8(name)) return store_.load(name, dtype);
  return ops::dequantize_fp8(*fp8(name)).to(dtype).contiguous();
}

std::optional<ops::Fp8Rows> Fp8Checkpoint::fp8(const std::string& name) const {
  if (stored_fp8(name)) {
    const at::Tensor codes = store_.view(name);
    if (codes.dim() != 2) {
      throw std::invalid_argument("FP8 checkpoint: \"" + name + "\" must be 2-D");
    }
    const int64_t out = codes.size(0);
    const std::string scale_name = name + "_scale";  // P.weight_scale
    if (!store_.has(scale_name)) {
      throw std::invalid_argument("FP8 checkpoint: \"" + name + "\" has no \"" + scale_name + "\"");
    }
    const at::Tensor s = store_.view(scale_name);
    if (!at::isFloatingType(s.scalar_type()) || s.scalar_type() == at::kFloat8_e4m3fn) {
      throw std::invalid_argument("FP8 checkpoint: \"" + scale_name + "\" must be a float tensor");
    }
    at::Tensor scale = s.to(at::kFloat).reshape({-1});
    if (scale.numel() == 1) {
      scale = scale.expand({out});
    } else if (scale.numel() != out || (s.dim() == 2 && s.size(1) != 1)) {
      throw std::invalid_argument("FP8 checkpoint: \"" + scale_name + "\" has " +
                                  std::to_string(s.numel()) +
                                  " values; one per tensor or one per output row (" +
                                  std::to_string(out) + ") is supported, not block-wise scales");
    }
    return ops::Fp8Rows{codes.view(at::kByte).contiguous(), scale.contiguous()};
  }
  if (!quantize_ || !is_projection(name) || !store_.has(name)) return std::nullopt;
  const at::Tensor w = store_.load(name, at::kFloat);
  if (w.dim() != 2) return std::nullopt;
  const float amax = w.abs().max().item<float>();
  const float s = amax > 0 ? amax / kernels::kFp8E4M3Max : 1.0f;
  const at::Tensor codes = (w / s)
                               .clamp(-kernels::kFp8E4M3Max, kernels::kFp8E4M3Max)
                               .to(at::kFloat8_e4m3fn)
                               .view(at::kByte)
                               .contiguous();
  return ops::Fp8Rows{codes, at::full({w.size(0)}, s, at::kFloat)};
}

}  // namespace taco
