// Sampling of float32 logits rows on the device: greedy or temperature with top-k, top-p and
// min-p, a caller-drawn uniform number per row, and the logprobs of the distribution the token
// was drawn from. The semantics are the CPU sampler's (cpp/model/sampler.cpp), in order:
//   s = logits / temperature; prob = softmax(s)
//   keep the ids with prob > 0, then the top_k most probable, then the shortest most-probable
//   prefix whose mass reaches top_p of what is left, then those with prob >= min_p * max(prob);
//   the order is by probability descending, ties by lower id
//   token = the first kept id, in id order, at which the running kept mass exceeds
//           uniform * (kept mass)
//   logprob(t) = log(prob[t] / kept mass); rank = 1 + number of kept ids more probable than the
//   token; the top list is the num_top most probable kept ids, descending.
// Greedy rows (temperature 0) take the first maximum of the logits and report the log-softmax of
// the logits, rank 1, top list over every id. Sums run in a different order than on the host,
// so a row whose uniform number lands within rounding of a boundary may pick a neighbour. Known
// differences from the host, all at rounding level: the order is by score (two scores whose
// probabilities round to one float keep their score order, not id order), and unfiltered top
// lists that reach ids of probability 0 list those (-inf) by score rather than by id.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace taco::cuda {

// Largest top list a row may ask for (vLLM's default max_logprobs is 20).
constexpr int kMaxSampleTop = 64;

struct SampleParams {
  const float* logits = nullptr;  // [rows, logits_stride] float32; the first vocab entries count
  int64_t rows = 0;
  int64_t vocab = 0;
  int64_t logits_stride = 0;           // elements between rows, >= vocab
  const float* temperature = nullptr;  // [rows]: 0 = greedy (top_k, top_p, min_p ignored)
  const int32_t* top_k = nullptr;      // [rows]: <= 0 or >= vocab = off
  const float* top_p = nullptr;        // [rows]: in (0, 1]; 1 = off
  const float* min_p = nullptr;        // [rows]: in [0, 1]; 0 = off
  const double* uniform = nullptr;     // [rows]: in [0, 1); unused by greedy rows
  int32_t num_top = 0;                 // top-list entries per row, 0..kMaxSampleTop
  int32_t* token = nullptr;            // [rows] out
  float* logprob = nullptr;            // [rows] out
  int32_t* rank = nullptr;             // [rows] out; 1 for greedy rows
  int32_t* top_ids = nullptr;          // [rows, num_top] out, -1 past the kept ids; unused
                                       // when num_top == 0
  float* top_logprobs = nullptr;       // [rows, num_top] out, -inf past the kept ids
};

// One block per row; reads each row a few dozen times from L2 (no workspace).
cudaError_t sample(const SampleParams& p, cudaStream_t stream);

// A grammar's token bitmasks applied to logits rows: logit t of a listed row becomes -inf unless
// bit t % 32 of word t / 32 of its mask is set. Ids from vocab on are left alone.
struct TokenBitmaskParams {
  float* logits = nullptr;           // [*, logits_stride] float32, edited in place
  int64_t logits_stride = 0;         // elements between rows, >= vocab
  int64_t vocab = 0;                 // ids a mask covers: words >= ceil(vocab / 32)
  const int32_t* bitmask = nullptr;  // [num_rows, words]
  int32_t words = 0;
  const int32_t* rows = nullptr;  // [num_rows]: the logits row of mask i
  int32_t num_rows = 0;
};

// One thread per logit, one grid row per mask.
cudaError_t apply_token_bitmask(const TokenBitmaskParams& p, cudaStream_t stream);

}  // namespace taco::cuda
