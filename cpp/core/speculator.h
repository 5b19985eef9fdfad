// Speculative decoding's proposer: drafts tokens for decoding sequences (prompt lookup or the
// lookahead cache) and sizes each sequence's drafts by how many of its recent ones were accepted.
// The model runner verifies a draft in the sequence's next forward; core/engine.cpp keeps the
// accepted prefix.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/engine_options.h"
#include "core/lookahead_cache.h"
#include "core/sequence.h"

namespace taco {

// One sequence's speculation history: how likely its next drafted token is to be accepted,
// from its recent verifications (each drafted position up to the first rejection is a trial).
struct SpecState {
  float accepted = 1.0f;  // decaying sums: drafted tokens accepted ...
  float trials = 2.0f;    // ... of those verified up to the first rejection (prior: one in two)
  int32_t paused = 0;     // steps left without drafts
  int32_t pause_len = 0;  // the last pause, doubled while drafts keep not paying
  int32_t indexed = 0;    // lookahead: windows starting before this are in the cache
};

// The draft length that maximizes expected tokens per unit of step time when each drafted token
// is accepted with probability p (given the ones before it) and each costs `row_cost` of a plain
// decode step; 0 when none pays. At most max_tokens.
int32_t best_draft_length(float p, float row_cost, int32_t max_tokens);

class Speculator {
 public:
  explicit Speculator(const EngineOptions& opts);
  bool enabled() const { return method_ != Method::kOff; }

  // Appends to draft up to min(max_tokens, the adaptive length) tokens for seq's next step, one
  // of `decodes` sequences decoding in it (a drafted token slows all of them); nothing when no
  // n-gram matches or the sequence's drafts are paused.
  void propose(const Sequence& seq, SpecState& st, int32_t max_tokens, int32_t decodes,
               std::vector<int32_t>* draft);
  // A verified draft of `drafted` tokens of which the first `accepted` were kept.
  void record(SpecState& st, int32_t drafted, int32_t accepted) const;
  // Lookahead: indexes seq's tokens not yet in the cache (its prompt at its first drafting
  // step, then its outputs, the last ones when it finishes).
  void observe(const Sequence& seq, SpecState& st);
  // A sequence forked from `parent` after the shared prompt: its history, without the windows
  // that lie within the prompt (the parent indexes those).
  SpecState fork_state(const SpecState& parent, int32_t prompt_len) const;
  // The time of a step that computed only decodes, `drafted` of its tokens drafted: the cost of
  // a drafted token relative to a plain decode step is measured, not assumed (tens of percent on
  // a CPU at batch 1; far less on a GPU, where a step is bound by reading the weights).
  void time_step(int32_t drafted, double seconds);

 private:
  enum class Method { kOff, kNgram, kLookahead };
  Method method_ = Method::kOff;
  int32_t num_tokens_ = 0;
  int32_t max_n_ = 0;
  int32_t min_n_ = 0;
  std::unique_ptr<LookaheadCache> cache_;
  double plain_step_ = 0;  // moving average of steps without drafts (seconds)
  float row_cost_ = 0;     // a drafted token's time over a plain step's, once measured
  bool measured_ = false;
};

}  // namespace taco
