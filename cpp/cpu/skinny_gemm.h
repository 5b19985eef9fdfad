// Skinny bf16 GEMM for the few-row case (single-stream decode, small batches): out = x W^T with
// x [m, k], W [n, k] (the nn.Linear layout), m small. Such a GEMM is bound by reading W, which
// oneDNN's bf16 path reads at about half the memory bandwidth at m = 1; this kernel streams W
// once, four rows at a time, and reuses each loaded W row for every x row (AVX512-BF16 dot
// products, float32 accumulation).
#pragma once

#include <cstdint>

namespace taco::cpu {

struct SkinnyGemmParams {
  void* out;       // [m, n] with row stride out_stride: bf16, or float when out_float
  const void* x;   // [m, k] bf16, row stride x_stride
  const void* w;   // [n, k] bf16 contiguous
  int64_t m = 0, n = 0, k = 0;
  int64_t x_stride = 0, out_stride = 0;
  bool out_float = false;
};

// Whether this build has the kernel (AVX512-BF16) and it takes this shape: k % 32 == 0.
bool skinny_gemm_supported(int64_t k);

// Requires skinny_gemm_supported(p.k).
void skinny_gemm_bf16(const SkinnyGemmParams& p);

}  // namespace taco::cpu
