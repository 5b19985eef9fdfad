// Skinny bf16 GEMM for the few-row case (single-stream decode, small batches): out = x W^T with
// x [m, k], W [n, k] (the nn.Linear layout), m small. Such a GEMM is bound by reading W, so W is
// read from a packed copy laid out in the order the kernel consumes it: one sequential stream
// per thread, which the hardware prefetcher follows without software prefetches. On the 2-core
// Zen 4 box all 121 projections of a SmolLM2 decode step at m = 1 take 7.4 ms this way against
// 12.7 ms over the plain layout (four interleaved row streams per thread). Each loaded W line is
// reused for every x row (AVX512-BF16 dot products, float32 accumulation).
//
// Packed layout: W's rows in tiles of kSkinnyTileRows; tile t holds, for each step of 32
// columns, the tile's rows' 32 values: [ceil(n / 4)][k / 32][4][32] bf16, rows past n zero.
#pragma once

#include "cpu/isa.h"

#include "cpu/half.h"

#include <cstdint>

namespace taco::cpu {
inline namespace TACO_CPU_NS {

constexpr int64_t kSkinnyTileRows = 4;

// SkinnyGemmParams: see cpu/isa.h (shared by every instruction-set level).

// Whether the kernel runs at this level (AVX512-BF16) and takes this shape: k % 32 == 0.
bool skinny_gemm_supported(int64_t k);

// Elements of the packed copy of an [n, k] weight.
int64_t skinny_packed_elems(int64_t n, int64_t k);

// w [n, k] bf16 contiguous -> packed (skinny_packed_elems(n, k) elements). Requires
// skinny_gemm_supported(k).
void pack_skinny_weight(const void* w, void* packed, int64_t n, int64_t k);

// Requires skinny_gemm_supported(p.k).
void skinny_gemm_bf16(const SkinnyGemmParams& p);

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
