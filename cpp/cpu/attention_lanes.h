// Prefill attention over bf16 caches with the query rows as SIMD lanes: up to 16 query rows of
// one (sequence, kv head) are scored against the sequence's cached keys together, one key per
// bf16 dot-product chain (the key's pairs broadcast against the transposed queries), so the
// softmax runs lane-wise with no horizontal reductions, and P V is a bf16 dot product over key
// pairs (P rounded to bf16, as FlashAttention's P V does on a GPU; sums stay float32). About
// twice the work per instruction of the row-at-a-time kernel (attention_block.h), which stays
// for decodes and other short tiles, where transposing the queries does not pay.
#pragma once

#include "cpu/isa.h"

#include "cpu/half.h"

#include <cstdint>

namespace taco::cpu {
inline namespace TACO_CPU_NS {

constexpr int64_t kLaneRows = 16;

struct LaneTile {
  const bf16* const* q;  // [rows] query rows, head_dim each
  bf16* const* out;      // [rows] output rows, head_dim each
  const int64_t* pos;    // [rows] position of the row's token: it sees keys 0..pos
  int64_t rows = 0;      // 1..kLaneRows
  int64_t head_dim = 0;  // attention_lanes_supported
  float scale = 1.0f;
};

struct LaneKeys {
  const bf16* k;         // block b's keys of this kv head: k + table[b] * block_stride
  const bf16* v;         // the same for values
  const int32_t* table;  // the sequence's block ids
  int64_t block_stride = 0;
  int64_t block_size = 0;  // a multiple of 2
};

// Whether this build has the kernel (AVX512-BF16) for this head size (a multiple of 32, <= 128).
bool attention_lanes_supported(int64_t head_dim, int64_t block_size);

// Writes every row's attention output (softmax over keys 0..pos[r] of q[r] . k * scale, times v).
void attend_lanes_bf16(const LaneTile& tile, const LaneKeys& keys);

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
