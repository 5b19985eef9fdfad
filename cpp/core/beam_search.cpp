#include "core/beam_search.h"

#include <algorithm>
#include <cmath>

#include "core/request.h"
#include "core/stop_check.h"

namespace taco {

std::vector<BeamCandidate> rank_beam_candidates(
    const std::vector<double>& parent_cum,
    const std::vector<const std::vector<TokenLogprob>*>& candidates, int k) {
  std::vector<BeamCandidate> all;
  for (size_t p = 0; p < candidates.size(); ++p) {
    const std::vector<TokenLogprob>& list = *candidates[p];
    for (size_t j = 0; j < list.size(); ++j) {
      // A token of probability 0 (masked by a grammar or allowed ids) is no continuation.
      if (!std::isfinite(list[j].logprob)) continue;
      BeamCandidate c;
      c.parent = static_cast<int32_t>(p);
      c.slot = static_cast<int32_t>(j);
      c.tok = list[j];
      c.cum = parent_cum[p] + list[j].logprob;
      all.push_back(c);
    }
  }
  const size_t keep = std::min<size_t>(std::max(k, 0), all.size());
  std::stable_sort(all.begin(), all.end(),
                   [](const BeamCandidate& a, const BeamCandidate& b) { return a.cum > b.cum; });
  all.resize(keep);
  return all;
}

double beam_score(double cumulative_logprob, int32_t generated_len, float length_penalty) {
  return cumulative_logprob / std::pow(static_cast<double>(generated_len), length_penalty);
}

void offer_beam_hypothesis(BeamState& st, BeamHyp hyp, int32_t width) {
  auto& kept = st.finished;
  if (static_cast<int32_t>(kept.size()) >= width) {
    if (kept.empty() || hyp.score <= kept.back().score) return;
    kept.pop_back();
  }
  auto at = std::upper_bound(kept.begin(), kept.end(), hyp.score,
                             [](double s, const BeamHyp& h) { return s > h.score; });
  kept.insert(at, std::move(hyp));
}

bool beam_search_done(BeamState& st, const SamplingOptions& o, std::optional<double> best_live_cum,
                      int32_t generated_len, int32_t max_generated_len) {
  if (!best_live_cum) return true;
  const bool full = static_cast<int32_t>(st.finished.size()) >= o.best_of;
  if (full && o.early_stopping == 1) return true;
  if (full && st.can_improve) {
    // The best a live beam can reach: its score now, or at the longest length when a positive
    // length penalty rewards length and early_stopping is "never".
    const int32_t len =
        (o.early_stopping == 2 && o.length_penalty > 0) ? max_generated_len : generated_len;
    const double best = beam_score(*best_live_cum, len, o.length_penalty);
    st.can_improve = best > st.finished.back().score;
  }
  return !st.can_improve;
}

namespace {

// The parent's per-token record (logprobs; with logprobs >= 0 also top lists and ranks) extended
// by candidate c, into a hypothesis or a child beam.
template <typename Record>
void extend_record(const SeqState& parent, const BeamCandidate& c, int logprobs, Record& out) {
  out.logprobs = parent.logprobs;
  out.logprobs.push_back(c.tok.logprob);
  if (logprobs >= 0) {
    out.top = parent.top;
    const std::vector<TokenLogprob>& cands = parent.candidates;
    out.top.emplace_back(cands.begin(), cands.begin() + std::min<size_t>(logprobs, cands.size()));
    out.ranks = parent.ranks;
    out.ranks.push_back(c.slot + 1);  // candidates are the top of the vocabulary, in order
  }
}

BeamHyp hypothesis(const Request& r, const SeqState& parent, const BeamCandidate& c,
                   int32_t generated_len) {
  BeamHyp h;
  h.output = parent.seq->output;
  h.output.push_back(c.tok.token);
  extend_record(parent, c, r.opts.logprobs, h);
  h.cumulative_logprob = c.cum;
  h.score = beam_score(c.cum, generated_len, r.opts.length_penalty);
  h.finish = c.stop;
  h.stop_token = c.stop_token;
  return h;
}

}  // namespace

void beam_child_record(const SeqState& parent, const BeamCandidate& c, int logprobs,
                       SeqState& child) {
  Sequence& q = *child.seq;
  q.output = parent.seq->output;
  q.output.push_back(c.tok.token);
  q.cumulative_logprob = c.cum;
  extend_record(parent, c, logprobs, child);
}

BeamStep plan_beam_step(Request& r, const std::vector<int32_t>& eos_ids, int32_t max_model_len) {
  const SamplingOptions& o = r.opts;
  BeamStep step;
  for (SeqState& s : r.seqs) {
    if (s.seq->finished()) continue;
    if (!s.has_candidates) return step;  // a beam still computing (chunked prefill): wait for it
    step.live.push_back(&s);
  }
  step.ready = true;
  std::vector<double> cum;
  std::vector<const std::vector<TokenLogprob>*> lists;
  for (SeqState* s : step.live) {
    cum.push_back(s->seq->cumulative_logprob);
    lists.push_back(&s->candidates);
  }
  std::vector<BeamCandidate> ranked =
      rank_beam_candidates(cum, lists, o.beam_candidates(eos_ids.size()));
  const Sequence& first = *step.live.front()->seq;
  const int32_t gen_len = static_cast<int32_t>(first.output.size()) + 1;
  for (BeamCandidate& c : ranked) {
    c.stop = stop_reason_for(c.tok.token, gen_len, first.prompt_len(), o, eos_ids, max_model_len,
                             &c.stop_token);
  }
  const int32_t width = o.best_of;
  const bool closed =
      !r.beam.can_improve ||
      (static_cast<int32_t>(r.beam.finished.size()) >= width && o.early_stopping == 1);
  for (size_t rank = 0; rank < ranked.size(); ++rank) {
    const BeamCandidate& c = ranked[rank];
    if (c.stop == FinishReason::kNone) {
      if (static_cast<int32_t>(step.next.size()) < width) step.next.push_back(c);
    } else if (static_cast<int32_t>(rank) < width && !closed) {
      offer_beam_hypothesis(r.beam, hypothesis(r, *step.live[c.parent], c, gen_len), width);
    }
  }
  step.generated = static_cast<int32_t>(step.live.size());
  const int32_t max_gen = std::min(o.max_tokens, max_model_len + 1 - first.prompt_len());
  std::optional<double> best_live;
  if (!step.next.empty()) best_live = step.next.front().cum;
  step.done = beam_search_done(r.beam, o, best_live, gen_len, max_gen);
  return step;
}

}  // namespace taco
