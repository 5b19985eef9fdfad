// One step of online-softmax attention: a block of cached keys/values (already in float) against
// a set of query rows, updating each row's running max, running sum and unnormalized output.
#pragma once

#include "cpu/isa.h"

#include "cpu/half.h"

#include <cstdint>

namespace taco::cpu {
inline namespace TACO_CPU_NS {

struct AttentionRows {
  const float* q;          // [rows, head_dim] queries, already multiplied by the softmax scale
  float* acc;              // [rows, head_dim] sum of exp(score - max) * v so far
  float* max;              // [rows] running max score (-inf before the first key)
  float* sum;              // [rows] running sum of exp(score - max)
  const int64_t* visible;  // [rows] keys of this block row r may see: a prefix, 0..block keys
  int64_t rows = 0;
  int64_t head_dim = 0;
};

// k, v: [keys, head_dim] float rows of one block (keys >= every visible[r]); rows past a row's
// visible prefix are never read for that row.
void attend_block(const AttentionRows& rows, const float* k, const float* v);

// bf16 caches: whether attend_block_bf16 takes this head size (an AVX512-BF16 build, head_dim a
// multiple of 32 up to 128).
bool attend_bf16_supported(int64_t head_dim);

// As attend_block over bf16 keys and values, by bf16 dot products (exact products, float32
// sums): q_bf16 [rows, head_dim] are the unscaled queries and rows.q is unused; scores are
// multiplied by scale. v_pairs: the block's values from pair_rows_bf16 (key_pairs.h), [keys / 2
// rounded up, head_dim] dwords, multiplied by the probabilities rounded to bf16. Saves widening
// K and V and half the multiply-adds.
void attend_block_bf16(const AttentionRows& rows, const bf16* q_bf16, float scale, const bf16* k,
                       const uint32_t* v_pairs);

}  // namespace TACO_CPU_NS
}  // namespace taco::cpu
