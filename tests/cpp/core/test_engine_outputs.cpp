// What the engine reports: stop conditions, n > 1 and best_of, logprobs, prompt logprobs.
#include <gtest/gtest.h>

#include <set>

#include "engine_harness.h"

namespace taco::test {
namespace {

constexpr int32_t kEos = 7;

// Emits 1, 2, 3, ... by output length, EOS (7) at output position 3, then 8, 9, ...
int32_t counting_token(const Sequence& s) {
  const int32_t k = static_cast<int32_t>(s.output.size());
  return k == 3 ? kEos : (k < 3 ? k + 1 : k + 5);
}

Harness counting_engine(int32_t max_model_len = 64) {
  return make_engine({}, {.num_device_blocks = 32, .block_size = 4, .next_token = counting_token},
                     max_model_len, {kEos});
}

Collected run_one(Harness& h, const SamplingOptions& s, int32_t prompt_len = 5) {
  h.engine->add_request("x", iota_prompt(prompt_len, 1), s);
  auto out = run_all(*h.engine);
  EXPECT_TRUE(out["x"].finished);
  EXPECT_EQ(out["x"].num_deltas_after_finish, 0);
  return out["x"];
}

TEST(Stops, EosEndsWithStopAndIsKept) {
  Harness h = counting_engine();
  Collected c = run_one(h, sampling(10));
  EXPECT_EQ(c.tokens[0], (std::vector<int32_t>{1, 2, 3, kEos}));
  EXPECT_EQ(c.finish[0], FinishReason::kStop);
  EXPECT_EQ(c.stop_token[0], -1);
  EXPECT_EQ(h.engine->metrics().kv_blocks_used, 0);
}

TEST(Stops, IgnoreEosRunsToMaxTokens) {
  Harness h = counting_engine();
  SamplingOptions s = sampling(6);
  s.ignore_eos = true;
  Collected c = run_one(h, s);
  EXPECT_EQ(c.tokens[0], (std::vector<int32_t>{1, 2, 3, kEos, 9, 10}));
  EXPECT_EQ(c.finish[0], FinishReason::kLength);
}

TEST(Stops, StopTokenIdsSetStopToken) {
  Harness h = counting_engine();
  SamplingOptions s = sampling(10);
  s.stop_token_ids = {2};
  Collected c = run_one(h, s);
  EXPECT_EQ(c.tokens[0], (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(c.finish[0], FinishReason::kStop);
  EXPECT_EQ(c.stop_token[0], 2);
}

TEST(Stops, MaxTokensEndsWithLength) {
  Harness h = counting_engine();
  Collected c = run_one(h, sampling(2));
  EXPECT_EQ(c.tokens[0], (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(c.finish[0], FinishReason::kLength);
}

TEST(Stops, MinTokensSuppressesEosAndStopIds) {
  Harness h = counting_engine();
  SamplingOptions s = sampling(10);
  s.min_tokens = 5;
  s.stop_token_ids = {2};
  s.ignore_eos = false;
  Collected c = run_one(h, s);
  // EOS at 4 and stop id at 2 come before min_tokens; the stream runs on to max_tokens.
  EXPECT_EQ(c.tokens[0].size(), 10u);
  EXPECT_EQ(c.finish[0], FinishReason::kLength);
  SamplingOptions t = sampling(10);
  t.min_tokens = 4;  // EOS is the 4th token: allowed
  Collected d = run_one(h, t);
  EXPECT_EQ(d.tokens[0].size(), 4u);
  EXPECT_EQ(d.finish[0], FinishReason::kStop);
}

TEST(Stops, MaxModelLenEndsWithLength) {
  Harness h = counting_engine(8);
  SamplingOptions s = sampling(50);
  s.ignore_eos = true;
  Collected c = run_one(h, s, 5);
  EXPECT_EQ(c.tokens[0].size(), 4u);  // 5 + 4 = 9 tokens: the last one needs no slot
  EXPECT_EQ(c.finish[0], FinishReason::kLength);
}

TEST(Stops, FinishSequenceFromPython) {
  Harness h = make_engine({}, {.num_device_blocks = 32, .block_size = 4}, 64);
  h.engine->add_request("x", iota_prompt(5, 1), sampling(20));
  std::map<std::string, Collected> acc;
  absorb(acc, h.engine->step());
  absorb(acc, h.engine->step());
  h.engine->finish_sequence("x", 0, FinishReason::kStop);
  EXPECT_EQ(h.engine->num_unfinished(), 0);
  EXPECT_EQ(h.engine->metrics().kv_blocks_used, 0);
  absorb(acc, h.engine->step());
  EXPECT_TRUE(acc["x"].finished);
  EXPECT_EQ(acc["x"].finish[0], FinishReason::kStop);
  EXPECT_EQ(acc["x"].tokens[0].size(), 2u);
  EXPECT_FALSE(h.engine->has_unfinished());
}

TEST(Sampling, NSequencesForkAfterOnePrefill) {
  Harness h = make_engine({}, {.num_device_blocks = 32, .block_size = 4}, 64);
  const std::vector<int32_t> prompt = iota_prompt(6, 2);
  h.engine->add_request("x", prompt, sampling(5, 3));
  auto out = run_all(*h.engine);
  const Collected& c = out["x"];
  ASSERT_EQ(c.tokens.size(), 3u);
  std::set<std::vector<int32_t>> distinct;
  for (int32_t i = 0; i < 3; ++i) {
    EXPECT_EQ(c.tokens[i], expected_stream(prompt, i, 5, 100)) << i;
    EXPECT_EQ(c.finish[i], FinishReason::kLength);
    distinct.insert(c.tokens[i]);
  }
  EXPECT_EQ(distinct.size(), 3u);
  // The prompt is computed once; each child recomputes only the last prompt token into a
  // copy of the shared partial block.
  EXPECT_EQ(h.exec->computed_tokens, 6 + 2 + 3 * 4);
  EXPECT_EQ(h.exec->num_copies, 2);
  EXPECT_EQ(h.engine->metrics().kv_blocks_used, 0);
}

TEST(Sampling, BestOfReportsTheNBestAtTheEnd) {
  Harness h = make_engine({}, {.num_device_blocks = 64, .block_size = 4}, 64);
  const std::vector<int32_t> prompt = iota_prompt(5, 4);
  SamplingOptions s = sampling(6, 2, 5);
  s.logprobs = 2;
  h.engine->add_request("x", prompt, s);
  std::map<std::string, Collected> acc;
  int deltas_before_finish = 0;
  while (h.engine->has_unfinished()) {
    auto d = h.engine->step();
    for (const RequestDelta& rd : d) {
      if (!rd.finished) ++deltas_before_finish;
      for (const SeqDelta& sd : rd.seqs) {
        EXPECT_TRUE(sd.replace);
        ASSERT_EQ(sd.new_top.size(), sd.new_token_ids.size());
        for (const auto& top : sd.new_top) EXPECT_EQ(top.size(), 2u);
      }
    }
    absorb(acc, d);
  }
  EXPECT_EQ(deltas_before_finish, 0);
  const Collected& c = acc["x"];
  ASSERT_EQ(c.tokens.size(), 2u);
  EXPECT_GE(c.cumulative[0], c.cumulative[1]);
  // The two reported streams are the best two of the five generated.
  std::vector<std::pair<double, std::vector<int32_t>>> all;
  Harness ref = make_engine({}, {.num_device_blocks = 64, .block_size = 4}, 64);
  ref.engine->add_request("y", prompt, sampling(6, 5));
  auto every = run_all(*ref.engine);
  for (int i = 0; i < 5; ++i) all.push_back({every["y"].cumulative[i], every["y"].tokens[i]});
  std::stable_sort(all.begin(), all.end(), [](auto& a, auto& b) { return a.first > b.first; });
  EXPECT_EQ(c.tokens[0], all[0].second);
  EXPECT_EQ(c.tokens[1], all[1].second);
}

TEST(Sampling, LogprobsAndFirstTokenTime) {
  Harness h = make_engine({}, {.num_device_blocks = 32, .block_size = 4}, 64);
  SamplingOptions s = sampling(3);
  s.logprobs = 3;
  s.prompt_logprobs = 0;
  h.engine->add_request("x", iota_prompt(9, 1), s);
  int prompt_deltas = 0;
  while (h.engine->has_unfinished()) {
    for (const RequestDelta& d : h.engine->step()) {
      EXPECT_GT(d.first_token_time, 0);
      if (!d.prompt_logprobs.empty()) {
        ++prompt_deltas;
        EXPECT_EQ(d.prompt_logprobs.size(), 8u);
      }
      for (const SeqDelta& sd : d.seqs) {
        for (const auto& top : sd.new_top) EXPECT_EQ(top.size(), 3u);
      }
    }
  }
  EXPECT_EQ(prompt_deltas, 1);
  EXPECT_EQ(h.engine->metrics().num_generated_tokens, 3);
  EXPECT_EQ(h.engine->metrics().num_prompt_tokens_computed, 9);
}

}  // namespace
}  // namespace taco::test
