#include "model/logits_processors.h"

#include <algorithm>
#include <limits>

namespace taco {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

bool in_vocab(int32_t t, int32_t vocab_size) { return t >= 0 && t < vocab_size; }

void apply_allowed(float* row, int32_t V, const std::vector<int32_t>& allowed) {
  if (allowed.empty()) return;
  std::vector<float> keep;
  keep.reserve(allowed.size());
  for (int32_t t : allowed) keep.push_back(in_vocab(t, V) ? row[t] : kNegInf);
  std::fill(row, row + V, kNegInf);
  for (size_t i = 0; i < allowed.size(); ++i) {
    if (in_vocab(allowed[i], V)) row[allowed[i]] = keep[i];
  }
}

// A bad word is banned when the output so far ends with all of its tokens but the last one.
void apply_bad_words(float* row, int32_t V, const std::vector<std::vector<int32_t>>& words,
                     const std::vector<int32_t>& output) {
  for (const auto& w : words) {
    if (w.empty() || !in_vocab(w.back(), V)) continue;
    const size_t prefix = w.size() - 1;
    if (prefix > output.size()) continue;
    if (std::equal(w.begin(), w.end() - 1, output.end() - prefix)) row[w.back()] = kNegInf;
  }
}

void apply_min_tokens(float* row, int32_t V, const SamplingOptions& o, const Sequence& seq,
                      const std::vector<int32_t>& eos) {
  if (static_cast<int>(seq.output.size()) >= o.min_tokens) return;
  for (int32_t t : o.stop_token_ids) {
    if (in_vocab(t, V)) row[t] = kNegInf;
  }
  if (o.ignore_eos) return;
  for (int32_t t : eos) {
    if (in_vocab(t, V)) row[t] = kNegInf;
  }
}

// HF RepetitionPenaltyLogitsProcessor over prompt + output (each token once); OpenAI presence /
// frequency penalties over output counts.
void apply_penalties(float* row, int32_t V, const SamplingOptions& o, const Sequence& seq) {
  const bool rep = o.repetition_penalty != 1.0f;
  const bool pf = o.presence_penalty != 0.0f || o.frequency_penalty != 0.0f;
  if (!rep && !pf) return;
  std::vector<int32_t> counts(V, 0);  // output occurrences
  std::vector<uint8_t> seen(V, 0);    // prompt or output
  for (int32_t t : *seq.prompt) {
    if (in_vocab(t, V)) seen[t] = 1;
  }
  for (int32_t t : seq.output) {
    if (in_vocab(t, V)) seen[t] = 1, ++counts[t];
  }
  for (int32_t t = 0; t < V; ++t) {
    if (rep && seen[t]) {
      row[t] = row[t] > 0 ? row[t] / o.repetition_penalty : row[t] * o.repetition_penalty;
    }
    if (pf && counts[t] > 0) {
      row[t] -= o.frequency_penalty * static_cast<float>(counts[t]) + o.presence_penalty;
    }
  }
}

}  // namespace

bool changes_logits(const SamplingOptions& o, const Sequence& seq) {
  return o.logits_hook_key >= 0 || !o.allowed_token_ids.empty() || !o.logit_bias.empty() ||
         !o.bad_words_token_ids.empty() || static_cast<int>(seq.output.size()) < o.min_tokens ||
         o.repetition_penalty != 1.0f || o.presence_penalty != 0.0f || o.frequency_penalty != 0.0f;
}

void process_logits(float* row, int32_t V, const SamplingOptions& o, const Sequence& seq,
                    const std::vector<int32_t>& eos_token_ids) {
  apply_allowed(row, V, o.allowed_token_ids);
  for (const auto& [t, bias] : o.logit_bias) {
    if (in_vocab(t, V)) row[t] += bias;
  }
  apply_bad_words(row, V, o.bad_words_token_ids, seq.output);
  apply_min_tokens(row, V, o, seq, eos_token_ids);
  apply_penalties(row, V, o, seq);
}

}  // namespace taco
