#include "core/speculator.h"

#include <algorithm>

#include "core/ngram_lookup.h"

namespace taco {

namespace {

constexpr int32_t kLookaheadNodes = 1 << 21;  // about 100 MB of tree at most
constexpr float kDecay = 0.8f;                // of the older verifications' weight per draft
// A drafted token's cost over one sequence's share of a step until steps have measured it.
constexpr float kPriorRowCost = 0.15f;
// Steps shorter than this are not timed (a step of a real model takes milliseconds).
constexpr double kShortestTimedStep = 1e-4;
constexpr double kTimeWeight = 0.1;  // of the newest step in the moving averages
constexpr int32_t kFirstPause = 4;
constexpr int32_t kLongestPause = 64;

}  // namespace

int32_t best_draft_length(float p, float row_cost, int32_t max_tokens) {
  int32_t best = 0;
  double best_rate = 1.0;  // a plain step: one token per step's time
  double tokens = 1.0;     // expected tokens of a step with d drafts: 1 + p + ... + p^d
  double term = 1.0;
  for (int32_t d = 1; d <= max_tokens; ++d) {
    term *= p;
    tokens += term;
    const double rate = tokens / (1.0 + row_cost * d);
    if (rate > best_rate * 1.0001) {
      best_rate = rate;
      best = d;
    }
  }
  return best;
}

Speculator::Speculator(const EngineOptions& o)
    : num_tokens_(o.num_speculative_tokens),
      max_n_(o.ngram_prompt_lookup_max),
      min_n_(o.ngram_prompt_lookup_min) {
  if (o.speculative_method == "ngram") method_ = Method::kNgram;
  if (o.speculative_method == "lookahead") {
    method_ = Method::kLookahead;
    cache_ = std::make_unique<LookaheadCache>(max_n_ + num_tokens_, kLookaheadNodes);
  }
}

void Speculator::propose(const Sequence& seq, SpecState& st, int32_t max_tokens, int32_t decodes,
                         std::vector<int32_t>* draft) {
  if (method_ == Method::kOff || max_tokens <= 0) return;
  if (st.paused > 0) {
    --st.paused;
    return;
  }
  // A drafted token costs every sequence of the step its time: against this sequence's share of
  // the step, it weighs `decodes` times its share of the whole.
  const float cost =
      measured_ ? row_cost_ * static_cast<float>(std::max(decodes, 1)) : kPriorRowCost;
  const int32_t n =
      best_draft_length(st.accepted / st.trials, cost, std::min(max_tokens, num_tokens_));
  if (n == 0) {
    // Drafts do not pay for this sequence now: decode plainly for a while (longer each time),
    // then probe again from the prior.
    st.pause_len = std::min(kLongestPause, st.pause_len == 0 ? kFirstPause : 2 * st.pause_len);
    st.paused = st.pause_len;
    st.accepted = SpecState{}.accepted;
    st.trials = SpecState{}.trials;
    return;
  }
  if (method_ == Method::kNgram) {
    ngram_lookup(seq, max_n_, min_n_, n, draft);
  } else {
    cache_->lookup(seq, max_n_, min_n_, n, draft);
  }
}

void Speculator::record(SpecState& st, int32_t drafted, int32_t accepted) const {
  if (drafted <= 0) return;
  st.accepted = kDecay * st.accepted + static_cast<float>(accepted);
  st.trials = kDecay * st.trials + static_cast<float>(accepted + (accepted < drafted ? 1 : 0));
  if (accepted > 0) st.pause_len = 0;
}

void Speculator::time_step(int32_t drafted, double seconds) {
  if (method_ == Method::kOff || !(seconds > 0)) return;
  if (drafted == 0) {
    plain_step_ =
        plain_step_ == 0 ? seconds : (1 - kTimeWeight) * plain_step_ + kTimeWeight * seconds;
    return;
  }
  if (plain_step_ < kShortestTimedStep) return;
  const double cost = std::clamp((seconds - plain_step_) / (drafted * plain_step_), 0.0001, 2.0);
  row_cost_ = measured_ ? static_cast<float>((1 - kTimeWeight) * row_cost_ + kTimeWeight * cost)
                        : static_cast<float>(cost);
  measured_ = true;
}

SpecState Speculator::fork_state(const SpecState& parent, int32_t prompt_len) const {
  SpecState child = parent;
  if (cache_) child.indexed = std::max(parent.indexed, prompt_len - cache_->depth() + 1);
  return child;
}

void Speculator::observe(const Sequence& seq, SpecState& st) {
  if (cache_) cache_->insert(seq, &st.indexed);
}

}  // namespace taco
