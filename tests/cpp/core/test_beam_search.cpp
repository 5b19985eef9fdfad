// Beam search through the whole engine (scheduling, copy-on-write forks, chunked prefill,
// preemption) against a direct reference of the same rules, plus the rules themselves.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <optional>

#include "core/beam_search.h"
#include "engine_harness.h"

namespace taco::test {
namespace {

constexpr int32_t kVocab = 40;
constexpr int32_t kEos = 0;

// A deterministic "model": log-softmax of hashed logits given the whole sequence, every token
// listed, descending (ties by id). EOS is given a boost so hypotheses finish now and then.
std::vector<TokenLogprob> model(const std::vector<int32_t>& tokens) {
  uint64_t h = 7;
  for (int32_t t : tokens) h = mix64(h ^ static_cast<uint32_t>(t));
  std::vector<double> logit(kVocab);
  double mx = -1e30;
  for (int32_t t = 0; t < kVocab; ++t) {
    logit[t] = static_cast<double>(mix64(h + t) % 1000) / 250.0 + (t == kEos ? 0.5 : 0.0);
    mx = std::max(mx, logit[t]);
  }
  double sum = 0;
  for (double x : logit) sum += std::exp(x - mx);
  std::vector<TokenLogprob> out;
  for (int32_t t = 0; t < kVocab; ++t) {
    out.push_back({t, static_cast<float>(logit[t] - mx - std::log(sum))});
  }
  std::stable_sort(out.begin(), out.end(), [](const TokenLogprob& a, const TokenLogprob& b) {
    return a.logprob > b.logprob;
  });
  return out;
}

std::vector<TokenLogprob> model_of(const Sequence& s) {
  std::vector<int32_t> tokens;
  for (int32_t i = 0; i < s.len(); ++i) tokens.push_back(s.token_at(i));
  return model(tokens);
}

struct RefBeam {
  std::vector<int32_t> out;
  double cum = 0;
};

// The rules of core/beam_search.h written out directly over the model.
std::vector<BeamHyp> reference(const std::vector<int32_t>& prompt, const SamplingOptions& o) {
  const int32_t width = o.best_of;
  BeamState st;
  std::vector<RefBeam> live{RefBeam{}};
  for (int32_t gen = 1;; ++gen) {
    std::vector<double> cum;
    std::vector<std::vector<TokenLogprob>> lists;
    for (const RefBeam& b : live) {
      std::vector<int32_t> seq = prompt;
      seq.insert(seq.end(), b.out.begin(), b.out.end());
      cum.push_back(b.cum);
      lists.push_back(model(seq));
    }
    std::vector<const std::vector<TokenLogprob>*> ptrs;
    for (const auto& l : lists) ptrs.push_back(&l);
    std::vector<BeamCandidate> ranked = rank_beam_candidates(cum, ptrs, o.beam_candidates(1));
    const bool closed = !st.can_improve || (static_cast<int32_t>(st.finished.size()) >= width &&
                                            o.early_stopping == 1);
    std::vector<RefBeam> next;
    for (size_t rank = 0; rank < ranked.size(); ++rank) {
      const BeamCandidate& c = ranked[rank];
      RefBeam b{live[c.parent].out, c.cum};
      b.out.push_back(c.tok.token);
      const bool eos = c.tok.token == kEos && !o.ignore_eos;  // HF counts K from the EOS ids
      const bool stop = eos || gen >= o.max_tokens;
      if (!stop) {
        if (static_cast<int32_t>(next.size()) < width) next.push_back(b);
      } else if (static_cast<int32_t>(rank) < width && !closed) {
        BeamHyp h;
        h.output = b.out;
        h.cumulative_logprob = c.cum;
        h.score = beam_score(c.cum, gen, o.length_penalty);
        offer_beam_hypothesis(st, h, width);
      }
    }
    std::optional<double> best;
    if (!next.empty()) best = next.front().cum;
    if (beam_search_done(st, o, best, gen, o.max_tokens)) return st.finished;
    live = next;
  }
}

SamplingOptions beam_options(int width, int n, int max_tokens, int early_stopping,
                             float length_penalty) {
  SamplingOptions o;
  o.use_beam_search = true;
  o.temperature = 0.0f;
  o.best_of = width;
  o.n = n;
  o.max_tokens = max_tokens;
  o.early_stopping = early_stopping;
  o.length_penalty = length_penalty;
  return o;
}

struct Schedule {
  const char* name;
  int32_t blocks;
  int32_t cpu_blocks;
  bool chunked;
  int32_t budget;
  PreemptionMode mode;
};

TEST(BeamSearchEngine, MatchesReferenceUnderEverySchedule) {
  const Schedule schedules[] = {
      {"roomy", 256, 0, false, 256, PreemptionMode::kRecompute},
      {"chunked", 256, 0, true, 5, PreemptionMode::kRecompute},
      {"tight-recompute", 30, 0, true, 16, PreemptionMode::kRecompute},
      {"tight-swap", 30, 64, false, 64, PreemptionMode::kSwap},
  };
  std::vector<std::vector<int32_t>> prompts = {{5, 9, 13}, {7, 1, 2, 3, 4, 5, 6, 8, 9, 11}, {21}};
  SamplingOptions long_run = beam_options(4, 2, 14, 0, 1.0f);
  long_run.ignore_eos = true;
  std::vector<SamplingOptions> opts = {
      beam_options(2, 2, 10, 0, 1.0f), long_run,
      beam_options(4, 4, 14, 0, 1.0f), beam_options(3, 1, 12, 1, 0.5f),
      beam_options(3, 3, 9, 2, 2.0f),  beam_options(2, 1, 8, 2, -1.0f)};
  for (const Schedule& sch : schedules) {
    EngineOptions eo;
    eo.max_num_seqs = 16;
    eo.enable_chunked_prefill = sch.chunked;
    eo.max_num_batched_tokens = sch.budget;
    eo.preemption_mode = sch.mode;
    FakeExecutorConfig cfg;
    cfg.num_device_blocks = sch.blocks;
    cfg.num_cpu_blocks = sch.cpu_blocks;
    cfg.block_size = 4;
    cfg.vocab = kVocab;
    cfg.beam_candidates = model_of;
    Harness h = make_engine(eo, cfg, 64, {kEos});
    std::map<std::string, std::pair<size_t, size_t>> which;
    for (size_t p = 0; p < prompts.size(); ++p) {
      for (size_t k = 0; k < opts.size(); ++k) {
        const std::string id = std::to_string(p) + "/" + std::to_string(k);
        h.engine->add_request(id, prompts[p], opts[k]);
        which[id] = {p, k};
      }
    }
    auto got = run_all(*h.engine);
    for (const auto& [id, pk] : which) {
      const SamplingOptions& o = opts[pk.second];
      const std::vector<BeamHyp> want = reference(prompts[pk.first], o);
      const Collected& c = got.at(id);
      ASSERT_TRUE(c.finished) << sch.name << " " << id;
      ASSERT_EQ(c.tokens.size(), std::min<size_t>(o.n, want.size())) << sch.name << " " << id;
      for (size_t j = 0; j < c.tokens.size(); ++j) {
        EXPECT_EQ(c.tokens[j], want[j].output) << sch.name << " " << id << " beam " << j;
        EXPECT_NEAR(c.cumulative[j], want[j].cumulative_logprob, 1e-4);
        const bool eos = want[j].output.back() == kEos && !o.ignore_eos;
        EXPECT_EQ(c.finish[j], eos ? FinishReason::kStop : FinishReason::kLength);
      }
    }
    const EngineMetrics m = h.engine->metrics();
    EXPECT_EQ(m.kv_blocks_used, 0) << sch.name;
    EXPECT_EQ(m.cpu_blocks_used, 0) << sch.name;
    EXPECT_FALSE(h.engine->has_unfinished());
    if (sch.blocks == 30) EXPECT_GT(m.num_preemptions, 0) << sch.name;
    int64_t total = 0, finished_by_eos = 0;
    for (const auto& [id, c] : got) {
      for (const auto& t : c.tokens) {
        total += 1;
        finished_by_eos += t.back() == kEos;
      }
    }
    EXPECT_GT(finished_by_eos, 0) << sch.name;  // both ways of finishing are exercised
    EXPECT_LT(finished_by_eos, total) << sch.name;
  }
}

TEST(BeamSearchEngine, AbortMidSearchFreesEverything) {
  FakeExecutorConfig cfg;
  cfg.vocab = kVocab;
  cfg.beam_candidates = model_of;
  Harness h = make_engine(EngineOptions{}, cfg, 64, {kEos});
  SamplingOptions o = beam_options(4, 4, 30, 0, 1.0f);
  o.ignore_eos = true;
  h.engine->add_request("a", {1, 2, 3}, o);
  for (int i = 0; i < 5; ++i) h.engine->step();
  EXPECT_GT(h.engine->metrics().kv_blocks_used, 0);
  EXPECT_TRUE(h.engine->abort("a"));
  EXPECT_EQ(h.engine->metrics().kv_blocks_used, 0);
  EXPECT_FALSE(h.engine->has_unfinished());
}

TEST(BeamSearchRules, TokensOfProbabilityZeroAreNoCandidates) {
  // A grammar (or allowed ids) masks all but one token of each parent: the -inf entries of the
  // top lists never become beams, however few finite candidates remain.
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<TokenLogprob> a = {{5, -0.1f}, {1, -inf}, {2, -inf}};
  const std::vector<TokenLogprob> b = {{7, -0.3f}, {0, -inf}};
  const std::vector<BeamCandidate> ranked = rank_beam_candidates({-1.0, -0.5}, {&a, &b}, 4);
  ASSERT_EQ(ranked.size(), 2u);
  EXPECT_EQ(ranked[0].tok.token, 7);
  EXPECT_EQ(ranked[1].tok.token, 5);
}

TEST(BeamSearchRules, KeepsTheWidthBestHypothesesInOrder) {
  BeamState st;
  for (double s : {-3.0, -1.0, -5.0, -2.0, -0.5}) {
    BeamHyp h;
    h.score = s;
    offer_beam_hypothesis(st, h, 3);
  }
  ASSERT_EQ(st.finished.size(), 3u);
  EXPECT_EQ(st.finished[0].score, -0.5);
  EXPECT_EQ(st.finished[1].score, -1.0);
  EXPECT_EQ(st.finished[2].score, -2.0);
}

TEST(BeamSearchRules, StoppingFollowsEarlyStoppingAndLengthPenalty) {
  auto full_state = [] {
    BeamState st;
    for (double s : {-1.0, -2.0}) {
      BeamHyp h;
      h.score = s;
      offer_beam_hypothesis(st, h, 2);
    }
    return st;
  };
  SamplingOptions o = beam_options(2, 2, 100, 0, 1.0f);
  BeamState st = full_state();
  // early_stopping False: the best live beam (cum -10 at length 4 -> -2.5) cannot beat -2.
  EXPECT_TRUE(beam_search_done(st, o, -10.0, 4, 100));
  st = full_state();
  EXPECT_FALSE(beam_search_done(st, o, -6.0, 4, 100));  // -1.5 still beats -2
  // "never" with a positive penalty judges at the maximum length: -10 / 100 beats -2.
  o.early_stopping = 2;
  st = full_state();
  EXPECT_FALSE(beam_search_done(st, o, -10.0, 4, 100));
  // True: done as soon as width hypotheses are kept.
  o.early_stopping = 1;
  st = full_state();
  EXPECT_TRUE(beam_search_done(st, o, -0.1, 4, 100));
  // Never done while fewer than width hypotheses are kept, unless nothing is live.
  o.early_stopping = 0;
  BeamState few;
  EXPECT_FALSE(beam_search_done(few, o, -1000.0, 50, 100));
  EXPECT_TRUE(beam_search_done(few, o, std::nullopt, 50, 100));
}

}  // namespace
}  // namespace taco::test
