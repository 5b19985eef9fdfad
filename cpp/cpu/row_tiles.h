// The tile layout the skinny kernels stream (bf16 skinny GEMM, FP8 linear): W [n, k] in tiles of
// `rows` rows; tile t holds, for each step of `step` columns, its rows' `step` values one row
// after another: [ceil(n / rows)][k / step][rows][step] elements, rows past n zero.
#pragma once

#include "cpu/isa.h"

#include <cstdint>
#include <cstring>

#include "cpu/parallel.h"

namespace taco::cpu {
inline namespace TACO_CPU_NS {

// w [n, k] row-major of elem_bytes-byte elements -> packed; k a multiple of step.
inline void pack_row_tiles(const void* w, void* packed, int64_t n, int64_t k, int64_t elem_bytes,
                           int64_t rows, int64_t step) {
  const auto* src = static_cast<const uint8_t*>(w);
  auto* dst = static_cast<uint8_t*>(packed);
  const int64_t row_bytes = k * elem_bytes, step_bytes = step * elem_bytes;
  parallel_for(0, (n + rows - 1) / rows, 64, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      uint8_t* tile = dst + t * rows * row_bytes;
      for (int64_t c = 0; c < k; c += step) {
        for (int64_t r = 0; r < rows; ++r) {
          uint8_t* out = tile + (c * rows + r * step) * elem_bytes;
          const int64_t row = t * rows + r;
          if (row < n) {
            std::memcpy(out, src + row * row_bytes + c * elem_bytes, step_bytes);
          } else {
            std::memset(out, 0, step_bytes);
          }
        }
      }
    }
  });
}

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
