// A GGUF file as a model: the ModelConfig its metadata describes, and its tensors under HF names
// (llama.cpp's names mapped back, and the q/k rows of Llama-architecture files put back in HF's
// rotary order, which llama.cpp's converter interleaves). Block-quantized tensors of the types
// the quantized linears take (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) are handed over as
// stored.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/checkpoint.h"
#include "model/gguf.h"
#include "model/model_config.h"

namespace taco {

// The architectures GGUF files may name (general.architecture), comma separated.
std::string supported_gguf_architectures();

// Throws std::invalid_argument naming the file and key when the metadata is missing or
// inconsistent with the tensors.
ModelConfig gguf_model_config(const GgufFile& file);

class GgufCheckpoint : public Checkpoint {
 public:
  // config: gguf_model_config(*file).
  GgufCheckpoint(std::shared_ptr<const GgufFile> file, const ModelConfig& config);

  bool has(const std::string& name) const override { return names_.count(name) != 0; }
  std::vector<int64_t> shape(const std::string& name) const override;
  at::Tensor load(const std::string& name, at::ScalarType dtype) const override;
  std::optional<ops::QuantizedRows> quantized(const std::string& name) const override;

 private:
  struct Source {
    const GgufTensor* tensor = nullptr;
    int64_t rope_heads = 0;  // > 0: rows interleaved by llama.cpp's converter over this many heads
  };
  const Source& source(const std::string& name) const;
  at::Tensor reorder(const Source& s, const at::Tensor& t) const;

  std::shared_ptr<const GgufFile> file_;
  std::unordered_map<std::string, Source> names_;
};

}  // namespace taco
