// SiLU-and-mul: the gated MLP activation of Llama-family models.
#pragma once

#include <cstdint>

namespace taco::cpu {

struct SiluAndMulParams {
  void* out;        // [tokens, inter] contiguous
  // [tokens, 2 * inter]: gate in the first half, up in the second; row stride x_stride
  const void* x;
  int64_t tokens = 0;
  int64_t inter = 0;
  int64_t x_stride = 0;
};

// out = silu(gate) * up, each product rounded to the model dtype as HF computes it.
template <typename T>
void silu_and_mul(const SiluAndMulParams& p);

}  // namespace taco::cpu
