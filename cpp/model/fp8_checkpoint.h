// FP8 (E4M3) projection weights, as ops::Fp8Rows (codes and a float32 scale per output row):
//   - pre-quantized checkpoints (quant_method "fp8", or compressed-tensors FP8 schemes): a
//     projection P stores P.weight as F8_E4M3 and P.weight_scale, float32 with one value (per
//     tensor) or one per output row (per channel: [out] or [out, 1]); P.input_scale (static
//     activation scales) is read by nothing: activations stay in the model dtype (W8A16). Layers
//     a checkpoint leaves unquantized (its ignore list) are stored as floats and load as such.
//   - quantization="fp8" on a float checkpoint: every decoder-layer projection is quantized at
//     load with one scale per tensor, max|w| / 448, rounded to nearest (vLLM's online FP8);
//     the embedding and the output layer stay in the model dtype.
#pragma once

#include <string>

#include "model/checkpoint.h"
#include "model/safetensors.h"

namespace taco {

class Fp8Checkpoint : public Checkpoint {
 public:
  // quantize: quantize float projection weights at load (quantization="fp8").
  Fp8Checkpoint(WeightStore store, bool quantize);

  bool has(const std::string& name) const override { return store_.has(name); }
  std::vector<int64_t> shape(const std::string& name) const override { return store_.shape(name); }
  // FP8 tensors dequantized (code * scale), others as stored.
  at::Tensor load(const std::string& name, at::ScalarType dtype) const override;
  std::optional<ops::Fp8Rows> fp8(const std::string& name) const override;

 private:
  bool stored_fp8(const std::string& name) const;

  WeightStore store_;
  bool quantize_;
};

}  // namespace taco
