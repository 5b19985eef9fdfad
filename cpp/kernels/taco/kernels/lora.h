// LoRA params: the low-rank update y += (x A^T) B^T of many adapters over one batch, each token
// with its adapter's slot (punica's shrink / expand, grouped by slot).
#pragma once

#include <cstdint>
#include <string>

#include "taco/kernels/check.h"
#include "taco/kernels/dtype.h"

namespace taco::kernels {

// A projection fused from up to three (q, k, v; gate, up) has one A and one B per part.
constexpr int kMaxLoraSlices = 3;

struct LoraParams {
  void* y = nullptr;        // [tokens, out] dtype, row stride y_stride: the base projection's
                            //   output, updated in place
  const void* x = nullptr;  // [tokens, in] dtype, row stride x_stride: the projection's input
  // [num_slots, in, slices * rank] weight_dtype: the slices' A side by side, transposed; slice
  // s's in columns [s * rank, (s + 1) * rank), zero where an adapter's rank is smaller (or it
  // leaves slice s alone).
  const void* a = nullptr;
  // [num_slots, rank, out] weight_dtype: the slices' B side by side, transposed and scaled
  // (lora_alpha / r, or / sqrt(r) for rsLoRA). Column o of slice s (slice_start[s] <= o <
  // slice_start[s + 1]) multiplies slice s's x A^T: y[t, o] += sum_r scratch[t, s * rank + r] *
  // b[slot, r, o].
  const void* b = nullptr;
  const int32_t* token_slot = nullptr;  // [tokens]: the adapter slot of each token, < 0: none
  // [tokens, slices * rank] float32 for x A^T: the CUDA kernels need it; the CPU kernel keeps
  // its own per thread and may be given none.
  float* scratch = nullptr;
  int32_t slice_start[kMaxLoraSlices + 1] = {0, 0, 0, 0};
  int64_t tokens = 0;
  int64_t in = 0;
  int64_t out = 0;
  int64_t rank = 0;  // per slice, the largest of the slots' adapters
  int64_t slices = 1;
  int64_t num_slots = 0;
  int64_t x_stride = 0;
  int64_t y_stride = 0;
  DType dtype = DType::kBFloat16;
  DType weight_dtype = DType::kBFloat16;

  std::string check() const {
    using namespace detail;
    constexpr const char* w = "LoraParams";
    bool slices_ok = slices >= 1 && slices <= kMaxLoraSlices && slice_start[0] == 0;
    for (int64_t s = 0; slices_ok && s < slices; ++s) {
      slices_ok = slice_start[s + 1] > slice_start[s];
    }
    slices_ok = slices_ok && slice_start[slices] == out;
    const bool any = tokens > 0;
    return first_error(
        require(tokens >= 0, w, "tokens", tokens, "must be >= 0"),
        require(in > 0, w, "in", in, "must be > 0"), require(out > 0, w, "out", out, "must be > 0"),
        require(rank > 0, w, "rank", rank, "must be > 0"),
        require(slices_ok, w, "slices", slices,
                "must be in [1, 3] with slice_start increasing from 0 to out"),
        require(num_slots > 0, w, "num_slots", num_slots, "must be > 0"),
        require(x_stride >= in, w, "x_stride", x_stride, "must be >= in"),
        require(y_stride >= out, w, "y_stride", y_stride, "must be >= out"),
        any ? require_ptr(y, w, "y") : std::string(), any ? require_ptr(x, w, "x") : std::string(),
        any ? require_ptr(a, w, "a") : std::string(), any ? require_ptr(b, w, "b") : std::string(),
        any ? require_ptr(token_slot, w, "token_slot") : std::string());
  }
};

}  // namespace taco::kernels
