// Per-request generation options the C++ engine acts on. Python's SamplingParams validates user
// input and fills this struct; C++ embedders fill it directly (taco.h mirrors it).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace taco {

struct SamplingOptions {
  int n = 1;        // sequences returned
  int best_of = 1;  // sequences generated (>= n); the n best by cumulative logprob are returned

  // Logits processing, applied in this order: allowed ids / bias / bad words, penalties,
  // temperature, then top-k, top-p, min-p filtering.
  float repetition_penalty = 1.0f;  // HF style: over prompt and output tokens
  float presence_penalty = 0.0f;    // OpenAI style: over output tokens
  float frequency_penalty = 0.0f;
  float temperature = 1.0f;  // 0 selects greedy
  float top_p = 1.0f;
  int top_k = -1;  // <= 0: disabled
  float min_p = 0.0f;
  std::optional<uint64_t> seed;  // per-request generator: same tokens in any batch position
  std::vector<int32_t> allowed_token_ids;                 // empty: all
  std::vector<std::pair<int32_t, float>> logit_bias;      // token id, bias added to the logit
  std::vector<std::vector<int32_t>> bad_words_token_ids;  // banned when the prefix matches

  // Stopping (stop strings live in Python: they need the detokenizer).
  int max_tokens = 16;  // already resolved: never above max_model_len - prompt length
  int min_tokens = 0;   // EOS and stop ids are suppressed before this many tokens
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;

  // Log probabilities: -1 none, k >= 0 the sampled token plus the top k.
  int logprobs = -1;
  int prompt_logprobs = -1;

  // Beam search (vLLM 0.6.0 use_beam_search): best_of is the beam width. A temperature > 0
  // (LLM.beam_search's) scales the logits the beams are scored on; beams never sample.
  bool use_beam_search = false;
  float length_penalty = 1.0f;
  int early_stopping = 0;  // 0 False, 1 True, 2 "never"

  bool greedy() const { return temperature == 0.0f || use_beam_search; }

  // Beam search keeps the best (1 + number of stop ids) * width continuations of all beams each
  // step (at least 2 * width), as HF does, so width of them survive even when the best ones stop.
  int beam_candidates(size_t num_eos_ids) const {
    const size_t stops = (ignore_eos ? 0 : num_eos_ids) + stop_token_ids.size();
    return static_cast<int>(std::max<size_t>(2, 1 + stops)) * best_of;
  }
};

}  // namespace taco
