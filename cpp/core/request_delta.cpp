#include "core/request_delta.h"

#include <algorithm>
#include <numeric>

namespace taco {

namespace {

SeqDelta tokens_since(SeqState& s, size_t from) {
  const Sequence& q = *s.seq;
  SeqDelta d;
  d.index = q.index;
  d.new_token_ids.assign(q.output.begin() + from, q.output.end());
  d.new_logprobs.assign(s.logprobs.begin() + from, s.logprobs.end());
  if (!s.top.empty()) d.new_top.assign(s.top.begin() + from, s.top.end());
  if (!s.ranks.empty()) d.new_ranks.assign(s.ranks.begin() + from, s.ranks.end());
  d.cumulative_logprob = q.cumulative_logprob;
  d.finish = q.finish;
  d.stop_token = q.stop_token;
  s.num_sent = q.output.size();
  s.finish_sent = q.finished();
  return d;
}

void best_of_final(Request& r, RequestDelta* d) {
  std::vector<size_t> order(r.seqs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return r.seqs[a].seq->cumulative_logprob > r.seqs[b].seq->cumulative_logprob;
  });
  const size_t n = std::min<size_t>(r.opts.n, order.size());
  for (size_t j = 0; j < n; ++j) {
    SeqDelta sd = tokens_since(r.seqs[order[j]], 0);
    sd.index = static_cast<int32_t>(j);
    sd.replace = true;
    d->seqs.push_back(std::move(sd));
  }
}

// The n best hypotheses by beam score, whole.
void beam_final(Request& r, RequestDelta* d) {
  const size_t n = std::min<size_t>(r.opts.n, r.beam.finished.size());
  for (size_t j = 0; j < n; ++j) {
    const BeamHyp& h = r.beam.finished[j];
    SeqDelta sd;
    sd.index = static_cast<int32_t>(j);
    sd.new_token_ids = h.output;
    sd.new_logprobs = h.logprobs;
    sd.new_top = h.top;
    sd.new_ranks = h.ranks;
    sd.cumulative_logprob = h.cumulative_logprob;
    sd.finish = h.finish;
    sd.stop_token = h.stop_token;
    sd.replace = true;
    d->seqs.push_back(std::move(sd));
  }
}

}  // namespace

bool build_delta(Request& r, RequestDelta* d) {
  d->request_id = r.id;
  d->num_cached_tokens = r.num_cached_tokens;
  d->first_token_time = r.first_token_time;
  if (r.prompt_logprobs_done && !r.prompt_logprobs_sent && r.opts.prompt_logprobs >= 0) {
    d->prompt_logprobs = std::move(r.prompt_logprobs);
    r.prompt_logprobs_sent = true;
  }
  d->finished = r.all_finished();
  if (r.opts.use_beam_search) {
    if (d->finished) beam_final(r, d);
  } else if (r.opts.best_of > r.opts.n && !r.opts.stream_best_of) {
    if (d->finished) best_of_final(r, d);
  } else {
    for (SeqState& s : r.seqs) {
      const bool news = s.seq->output.size() > s.num_sent;
      if (news || (s.seq->finished() && !s.finish_sent)) {
        d->seqs.push_back(tokens_since(s, s.num_sent));
      }
    }
  }
  return d->finished || !d->seqs.empty() || !d->prompt_logprobs.empty();
}

}  // namespace taco
