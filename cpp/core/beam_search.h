// Beam search bookkeeping (vLLM 0.6 use_beam_search, LLM.beam_search) with HF transformers'
// selection rules, so that results equal HF's beam search:
// - each step ranks the best K = SamplingOptions::beam_candidates() continuations of all live
//   beams by cumulative logprob (K > width so that width beams survive when the best ones stop);
// - candidates ranked within the top `width` that stop (EOS, a stop id, the length limit) become
//   finished hypotheses scored cum / generated_len ^ length_penalty, the stop token counted;
//   the `width` best hypotheses are kept;
// - the best `width` candidates that do not stop become the next beams;
// - the search ends when no beam can beat the worst kept hypothesis any more (early_stopping
//   False judges at the current length; "never" with length_penalty > 0 at the maximum length),
//   when `width` hypotheses are kept and early_stopping is True, or when every candidate stops.
// Pure logic over numbers; the engine forks and frees the beams' blocks.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "core/executor.h"
#include "core/sampling_options.h"
#include "core/sequence.h"

namespace taco {

struct BeamHyp {
  std::vector<int32_t> output;
  std::vector<float> logprobs;
  std::vector<std::vector<TokenLogprob>> top;  // when logprobs >= 0
  std::vector<int32_t> ranks;                  // when logprobs >= 0
  double cumulative_logprob = 0;
  double score = 0;  // cumulative_logprob / generated_len ^ length_penalty
  FinishReason finish = FinishReason::kNone;
  int32_t stop_token = -1;
};

struct BeamCandidate {
  int32_t parent = 0;  // position of the extended beam among the live beams given
  int32_t slot = 0;    // position among that beam's candidates
  TokenLogprob tok;
  double cum = 0;  // the parent's cumulative logprob + tok.logprob
  FinishReason stop = FinishReason::kNone;
  int32_t stop_token = -1;
};

struct BeamState {
  std::vector<BeamHyp> finished;  // best score first, at most width
  bool can_improve = true;        // some live beam may still beat the worst kept hypothesis
};

// The best k continuations over all parents, descending by cum (ties: earlier parent, then
// earlier candidate). candidates[p] lists parent p's tokens, descending by logprob; tokens of
// logprob -inf (probability 0) are skipped, so fewer than k may come back.
std::vector<BeamCandidate> rank_beam_candidates(
    const std::vector<double>& parent_cum,
    const std::vector<const std::vector<TokenLogprob>*>& candidates, int k);

double beam_score(double cumulative_logprob, int32_t generated_len, float length_penalty);

// Keeps hyp when fewer than width are kept or it beats the worst one.
void offer_beam_hypothesis(BeamState& st, BeamHyp hyp, int32_t width);

// After a step: updates st.can_improve from the best next beam's cum (none when every
// candidate stopped) and says whether the search is over. generated_len counts this step's
// token; max_generated_len is the length limit.
bool beam_search_done(BeamState& st, const SamplingOptions& o, std::optional<double> best_live_cum,
                      int32_t generated_len, int32_t max_generated_len);

struct Request;
struct SeqState;

// One step of a beam request, decided once every live beam has its candidates: stopped
// top-ranked candidates become hypotheses (kept in the request's BeamState), the best
// non-stopping ones become the next beams, or the search ends. The engine applies it: it makes
// the children (beam_child_record for their records, a copy-on-write fork for their blocks),
// releases the old beams, and finishes the request when done.
struct BeamStep {
  bool ready = false;               // false: a live beam is still computing; nothing happened
  bool done = false;                // the search is over: the request finishes
  std::vector<SeqState*> live;      // the beams that stepped
  std::vector<BeamCandidate> next;  // the next beams' parents (indices into live) and tokens
  int32_t generated = 0;            // tokens this step generated (one per live beam)
};

BeamStep plan_beam_step(Request& r, const std::vector<int32_t>& eos_ids, int32_t max_model_len);

// The child beam's per-token record (tokens, logprobs; with logprobs >= 0 also top lists and
// ranks): the parent's, extended by candidate c.
void beam_child_record(const SeqState& parent, const BeamCandidate& c, int logprobs,
                       SeqState& child);

}  // namespace taco
