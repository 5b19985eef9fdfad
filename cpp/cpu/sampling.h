// Host sampling arithmetic over one float32 row of V scores: the uniform numbers of seeded
// requests, softmax statistics, top-k / top-p / min-p filtering, inverse-CDF draws and the
// logprob / rank / top-list reports. Plain C++ over arrays (no torch); the Sampler in cpp/model
// applies it row by row, and the CUDA sampling kernel reproduces the same semantics.
#pragma once

#include <cstdint>
#include <vector>

#include "core/engine_options.h"
#include "core/executor.h"
#include "core/sampling_options.h"

namespace taco::cpu::sampling {

// Uniform in [0, 1) from (seed, sequence index, output length) alone.
double seeded_uniform(uint64_t seed, int32_t index, int32_t step);

// logprob(t) = row[t] - lse.
struct LogSoftmax {
  float lse = 0;
  float logprob(float x) const { return x - lse; }
};

// The first maximum, as torch's argmax.
int32_t argmax(const float* row, int64_t V);

// The k ids of highest score among ids (all of [0, V) when ids is null), descending, ties by
// lower id.
std::vector<int32_t> top_ids(const float* score, int64_t V, const std::vector<int32_t>* ids, int k);

std::vector<TokenLogprob> top_logprobs(const float* row, int64_t V, int k, const LogSoftmax& ls);

// A grammar's token bitmask over a row: row[t] = -inf where bit t % 32 of bits[t / 32] is clear.
void apply_token_bitmask(float* row, int64_t V, const int32_t* bits);

// Whether every entry of the row is -inf (nothing can be sampled).
bool all_masked(const float* row, int64_t V);

// log(sum(exp(row))), accumulated in double; -inf for an all -inf row.
float row_logsumexp(const float* row, int64_t V);

// The ids a row may sample after top-k, top-p and min-p (ascending) and their probability mass.
struct Kept {
  bool filtered = false;  // false: every id, ids empty
  std::vector<int32_t> ids;
  double total = 0;
  bool has(int32_t t) const;
};

// prob: softmax(row / temperature).
Kept keep_ids(const float* prob, int64_t V, const SamplingOptions& o);

// Inverse-CDF sampling with uniform u over the kept ids in id order, so the result depends only
// on the row and u.
int32_t draw(const float* prob, int64_t V, const Kept& k, double u);

bool reports_logits(LogprobsMode m);
bool reports_processed(LogprobsMode m);

// Token, value, rank and top list of a row reported from one plain score row `src` (processed
// logits of greedy rows, or raw logits): value = src[t] - lse, or src[t] for the logits modes.
void report_plain(const float* src, int64_t V, float lse, bool as_logits, int k, int32_t token,
                  bool want_rank, SeqStepResult& r);

// The same for a sampled row in a processed mode: the distribution the token was drawn from,
// softmax(row / T) renormalized over the kept ids; filtered ids are -inf and never listed.
void report_processed(const float* row, const float* prob, int64_t V, const Kept& kept,
                      float temperature, bool as_logits, int k, int32_t token, bool want_rank,
                      SeqStepResult& r);

}  // namespace taco::cpu::sampling
