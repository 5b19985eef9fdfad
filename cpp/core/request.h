// Engine-side state of one request: its sequences (n, best_of of them, or the live beams),
// their block tables and what has already been reported to the caller.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/beam_search.h"
#include "core/block_manager.h"
#include "core/executor.h"
#include "core/sampling_options.h"
#include "core/sequence.h"
#include "core/speculator.h"

namespace taco {

struct SeqState {
  std::unique_ptr<Sequence> seq;  // heap-held: ScheduledSeq points at it during execute
  BlockTable blocks;
  std::vector<float> logprobs;                 // per output token
  std::vector<std::vector<TokenLogprob>> top;  // per output token, when logprobs >= 0
  std::vector<int32_t> ranks;                  // per output token, when logprobs >= 0
  size_t num_sent = 0;                         // output tokens already reported
  bool finish_sent = false;
  // Beam search: this step's candidates, held until every live beam of the request has its own.
  bool has_candidates = false;
  std::vector<TokenLogprob> candidates;
  // Speculative decoding: the tokens drafted for the next step (verified in its forward, kept
  // up to the first the model disagrees with), and the history that sizes them.
  std::vector<int32_t> draft;
  SpecState spec;
};

struct Request {
  std::string id;
  SamplingOptions opts;
  std::shared_ptr<const std::vector<int32_t>> prompt;
  std::vector<SeqState> seqs;
  SeqStatus state = SeqStatus::kWaiting;
  int64_t arrival = 0;  // add order

  // The prompt is computed by sequence 0 alone; once it samples its first token the other
  // best_of - 1 sequences fork from it, sharing its blocks copy-on-write.
  bool forked = false;
  bool cache_reported = false;  // num_cached_tokens is measured at the first admission
  int32_t num_cached_tokens = 0;
  std::vector<std::vector<TokenLogprob>> prompt_logprobs;
  bool prompt_logprobs_done = false;  // all collected (or not wanted)
  bool prompt_logprobs_sent = false;
  double first_token_time = 0;
  bool changed = false;  // has something to report at the end of this step
  BeamState beam;        // opts.use_beam_search: the kept hypotheses

  bool wants_prompt_logprobs() const { return opts.prompt_logprobs >= 0 && !prompt_logprobs_done; }
  // Sequences this request may run at once, counted against max_num_seqs.
  int32_t seq_demand() const {
    if (!forked) return opts.best_of;
    int32_t n = 0;
    for (const SeqState& s : seqs) n += !s.seq->finished();
    return n;
  }
  bool all_finished() const {
    for (const SeqState& s : seqs) {
      if (!s.seq->finished()) return false;
    }
    return true;
  }
};

}  // namespace taco
