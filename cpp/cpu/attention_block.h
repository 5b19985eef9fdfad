// One step of online-softmax attention: a block of cached keys/values (already in float) against
// a set of query rows, updating each row's running max, running sum and unnormalized output.
#pragma once

#include <cstdint>

namespace taco::cpu {

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

}  // namespace taco::cpu
