// Speculative decoding in the engine core: the draft sources (prompt lookup, the lookahead
// cache), draft sizing, and engines whose outputs must not change when drafts are verified.
#include <gtest/gtest.h>

#include "core/lookahead_cache.h"
#include "core/ngram_lookup.h"
#include "core/speculator.h"
#include "engine_harness.h"

namespace taco::test {
namespace {

Sequence make_seq(std::vector<int32_t> prompt, std::vector<int32_t> output = {}) {
  Sequence s;
  s.prompt = std::make_shared<const std::vector<int32_t>>(std::move(prompt));
  s.output = std::move(output);
  return s;
}

// Speculation over `base`: up to k drafted tokens from n-grams of 1 .. max_n tokens.
EngineOptions with_drafts(EngineOptions base, const char* method, int32_t k, int32_t max_n) {
  base.speculative_method = method;
  base.num_speculative_tokens = k;
  base.ngram_prompt_lookup_max = max_n;
  base.ngram_prompt_lookup_min = 1;
  return base;
}

std::vector<int32_t> lookup(const Sequence& s, int32_t max_n, int32_t min_n, int32_t k) {
  std::vector<int32_t> draft;
  ngram_lookup(s, max_n, min_n, k, &draft);
  return draft;
}

TEST(NgramLookup, TakesTheLongestSuffixMatchAndItsLatestOccurrence) {
  // The suffix [2, 3, 4] recurs at the start; [3, 4] alone recurs later too. The longer match
  // wins over the later one.
  const Sequence s = make_seq({2, 3, 4, 5, 6, 9, 3, 4, 7, 8, 2, 3, 4});
  EXPECT_EQ(lookup(s, 3, 1, 3), (std::vector<int32_t>{5, 6, 9}));
  // With pairs only, the latest pair occurrence wins.
  EXPECT_EQ(lookup(s, 2, 1, 2), (std::vector<int32_t>{7, 8}));
}

TEST(NgramLookup, SpansPromptAndOutputAndStopsAtTheEnd) {
  const Sequence s = make_seq({1, 2, 3}, {1, 2});
  EXPECT_EQ(lookup(s, 2, 1, 5), (std::vector<int32_t>{3, 1, 2}));
  EXPECT_EQ(lookup(s, 2, 1, 1), (std::vector<int32_t>{3}));
}

TEST(NgramLookup, NothingBelowTheMinimumMatch) {
  const Sequence s = make_seq({1, 2, 3, 9, 3});
  EXPECT_EQ(lookup(s, 3, 1, 2), (std::vector<int32_t>{9, 3}));
  EXPECT_TRUE(lookup(s, 3, 2, 2).empty());
  EXPECT_TRUE(lookup(make_seq({5}), 3, 1, 2).empty());
  EXPECT_TRUE(lookup(make_seq({1, 2, 3}), 3, 1, 2).empty());
}

TEST(LookaheadCache, DraftsWhatAnotherSequenceDidAfterTheSameContext) {
  LookaheadCache cache(/*depth=*/5, /*max_nodes=*/1000);
  const Sequence a = make_seq({10, 11, 12, 13, 14, 15, 16});
  int32_t indexed = 0;
  cache.insert(a, &indexed);
  EXPECT_EQ(indexed, 3);  // windows of 5 starting at 0, 1, 2
  std::vector<int32_t> draft;
  cache.lookup(make_seq({7, 8, 11, 12}), 2, 1, 3, &draft);
  EXPECT_EQ(draft, (std::vector<int32_t>{13, 14, 15}));
  draft.clear();
  cache.lookup(make_seq({7, 8, 99}), 2, 1, 3, &draft);
  EXPECT_TRUE(draft.empty());
}

TEST(LookaheadCache, TheMostFrequentContinuationWins) {
  LookaheadCache cache(3, 1000);
  for (const std::vector<int32_t>& p :
       {std::vector<int32_t>{1, 2, 3}, {1, 2, 4}, {1, 2, 4}, {1, 2, 5}}) {
    int32_t indexed = 0;
    cache.insert(make_seq(p), &indexed);
  }
  std::vector<int32_t> draft;
  cache.lookup(make_seq({9, 1, 2}), 2, 1, 1, &draft);
  EXPECT_EQ(draft, (std::vector<int32_t>{4}));
}

TEST(LookaheadCache, StartsOverWhenFull) {
  LookaheadCache cache(4, 10);
  int32_t indexed = 0;
  std::vector<int32_t> tokens(50);
  for (int32_t i = 0; i < 50; ++i) tokens[i] = i;
  cache.insert(make_seq(tokens), &indexed);
  EXPECT_EQ(indexed, 47);
  EXPECT_LE(cache.num_nodes(), 10);
  std::vector<int32_t> draft;
  cache.lookup(make_seq({45, 46}), 2, 1, 2, &draft);  // the newest windows survive
  EXPECT_EQ(draft, (std::vector<int32_t>{47, 48}));
}

TEST(Speculator, DraftLengthFollowsTheAcceptanceAndItsCost) {
  EXPECT_EQ(best_draft_length(0.05f, 0.15f, 8), 0);  // nothing pays
  EXPECT_EQ(best_draft_length(0.5f, 0.15f, 8), 2);
  EXPECT_EQ(best_draft_length(0.95f, 0.15f, 8), 8);  // capped
  EXPECT_EQ(best_draft_length(0.95f, 0.15f, 3), 3);
  EXPECT_GT(best_draft_length(0.9f, 0.01f, 32), best_draft_length(0.9f, 0.15f, 32));
  EXPECT_EQ(best_draft_length(1.0f, 0.15f, 0), 0);
}

TEST(Speculator, GrowsDraftsThatAreAcceptedAndPausesOnesThatAreNot) {
  Speculator spec(with_drafts({}, "ngram", 4, 2));
  const Sequence s = make_seq({1, 2, 3, 4, 5, 6, 1});
  SpecState st;
  std::vector<int32_t> draft;
  spec.propose(s, st, 10, 1, &draft);
  EXPECT_EQ(draft, (std::vector<int32_t>{2, 3}));  // the prior: one in two accepted
  spec.record(st, 2, 2);
  draft.clear();
  spec.propose(s, st, 10, 1, &draft);
  EXPECT_EQ(draft, (std::vector<int32_t>{2, 3, 4, 5}));
  draft.clear();
  spec.propose(s, st, 3, 1, &draft);  // room caps the draft
  EXPECT_EQ(draft.size(), 3u);
  int failures = 0;
  while (!draft.empty() && failures < 20) {
    spec.record(st, static_cast<int32_t>(draft.size()), 0);
    ++failures;
    draft.clear();
    spec.propose(s, st, 10, 1, &draft);
  }
  EXPECT_LT(failures, 8);  // paused after a few drafts that kept nothing
  EXPECT_GT(st.paused, 0);
  const int32_t pause = st.paused;
  for (int i = 0; i < pause; ++i) {
    draft.clear();
    spec.propose(s, st, 10, 1, &draft);
    EXPECT_TRUE(draft.empty());
  }
  draft.clear();
  spec.propose(s, st, 10, 1, &draft);  // probes again after the pause
  EXPECT_FALSE(draft.empty());
}

// A model that repeats its context with period 5: drafts from the context are right.
int32_t periodic(const Sequence& s) { return s.len() >= 5 ? s.token_at(s.len() - 5) : 1; }

std::map<std::string, Collected> run_periodic(EngineOptions o, int32_t blocks, int n,
                                              EngineMetrics* m) {
  FakeExecutorConfig fc{.num_device_blocks = blocks, .block_size = 4, .vocab = 50};
  fc.next_token = periodic;
  Harness h = make_engine(o, fc, 64, {0});
  for (int r = 0; r < 4; ++r) {
    SamplingOptions so = sampling(30 + r, n);
    h.engine->add_request("r" + std::to_string(r), {5 + r, 6, 7, 8, 9, 5 + r, 6}, so);
  }
  auto acc = run_all(*h.engine);
  *m = h.engine->metrics();
  EXPECT_EQ(m->kv_blocks_used, 0);
  return acc;
}

TEST(SpeculativeEngine, OutputsEqualPlainDecodingAndDraftsAreAccepted) {
  for (const char* method : {"ngram", "lookahead"}) {
    for (bool caching : {false, true}) {
      for (int n : {1, 2}) {
        SCOPED_TRACE(std::string(method) + (caching ? " caching" : "") + " n " + std::to_string(n));
        EngineOptions plain;
        plain.enable_prefix_caching = caching;
        plain.enable_chunked_prefill = caching;
        plain.max_num_batched_tokens = caching ? 8 : 0;
        const EngineOptions spec = with_drafts(plain, method, 4, 3);
        EngineMetrics pm, sm;
        const auto want = run_periodic(plain, 200, n, &pm);
        const auto got = run_periodic(spec, 200, n, &sm);
        for (const auto& [id, c] : want) {
          EXPECT_EQ(got.at(id).tokens, c.tokens) << id;
          EXPECT_EQ(got.at(id).finish, c.finish) << id;
        }
        EXPECT_EQ(pm.spec_decode_num_drafts, 0);
        EXPECT_GT(sm.spec_decode_num_accepted_tokens, sm.spec_decode_num_draft_tokens / 2);
        EXPECT_EQ(sm.spec_decode_num_emitted_tokens,
                  sm.spec_decode_num_accepted_tokens + sm.spec_decode_num_drafts);
        EXPECT_LT(sm.num_steps, pm.num_steps);
        EXPECT_EQ(sm.num_generated_tokens, pm.num_generated_tokens);
      }
    }
  }
}

TEST(SpeculativeEngine, DraftsNeverPreemptAndShortCachesStillDrain) {
  const EngineOptions plain;
  const EngineOptions spec = with_drafts(plain, "ngram", 8, 2);
  EngineMetrics pm, sm;
  // 16 blocks of 4 tokens hold one 64-token sequence: the four requests preempt each other.
  const auto want = run_periodic(plain, 16, 1, &pm);
  const auto got = run_periodic(spec, 16, 1, &sm);
  for (const auto& [id, c] : want) EXPECT_EQ(got.at(id).tokens, c.tokens) << id;
  EXPECT_LE(sm.num_preemptions, pm.num_preemptions);
  EXPECT_GT(sm.spec_decode_num_accepted_tokens, 0);
}

TEST(SpeculativeEngine, NoDraftsAboveTheBatchSizeLimitOrForBeams) {
  EngineOptions spec = with_drafts({}, "ngram", 4, 2);
  spec.speculative_disable_by_batch_size = 3;
  EngineMetrics m;
  run_periodic(spec, 200, 1, &m);
  // Four requests: drafts start once at most three are unfinished.
  EXPECT_GT(m.spec_decode_num_drafts, 0);
  FakeExecutorConfig fc{.num_device_blocks = 200, .block_size = 4, .vocab = 50};
  fc.next_token = periodic;
  fc.beam_candidates = [](const Sequence& s) {
    return std::vector<TokenLogprob>{{periodic(s), -0.1f}, {3, -2.0f}, {4, -3.0f}, {2, -4.0f}};
  };
  spec.speculative_disable_by_batch_size = 0;
  Harness h = make_engine(spec, fc, 64, {0});
  SamplingOptions beams = sampling(10, 2);
  beams.use_beam_search = true;
  beams.temperature = 0.0f;
  h.engine->add_request("b", {5, 6, 7, 8, 9, 5, 6}, beams);
  run_all(*h.engine);
  EXPECT_EQ(h.engine->metrics().spec_decode_num_drafts, 0);
  EXPECT_EQ(h.exec->num_drafted, 0);
}

}  // namespace
}  // namespace taco::test
