#include "core/beam_search.h"

#include <algorithm>
#include <cmath>

namespace taco {

std::vector<BeamCandidate> rank_beam_candidates(
    const std::vector<double>& parent_cum,
    const std::vector<const std::vector<TokenLogprob>*>& candidates, int k) {
  std::vector<BeamCandidate> all;
  for (size_t p = 0; p < candidates.size(); ++p) {
    const std::vector<TokenLogprob>& list = *candidates[p];
    for (size_t j = 0; j < list.size(); ++j) {
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

}  // namespace taco
