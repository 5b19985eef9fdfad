#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "core/sampling_options.h"
#include "core/sequence.h"
#include "model/sampler.h"

namespace taco {
namespace {

constexpr int32_t kVocab = 50;

struct Row {
  Sequence seq;
  SamplingOptions opts;
  ScheduledSeq sched;
  SeqStepResult result;
};

std::unique_ptr<Row> make_row(std::vector<int32_t> prompt, std::vector<int32_t> output,
                              SamplingOptions opts, int32_t index = 0) {
  auto r = std::make_unique<Row>();
  r->seq.prompt = std::make_shared<const std::vector<int32_t>>(std::move(prompt));
  r->seq.output = std::move(output);
  r->seq.index = index;
  r->opts = opts;
  r->sched.seq = &r->seq;
  r->sched.sampling = &r->opts;
  r->sched.do_sample = true;
  return r;
}

at::Tensor random_logits(int64_t n, uint64_t seed) {
  at::manual_seed(seed);
  return at::randn({n, kVocab}, at::kFloat) * 3;
}

std::vector<SeqStepResult> run(Sampler& s, at::Tensor logits, std::vector<Row*> rows) {
  std::vector<const ScheduledSeq*> sched;
  std::vector<SeqStepResult*> res;
  for (Row* r : rows) {
    r->result = SeqStepResult{};
    sched.push_back(&r->sched);
    res.push_back(&r->result);
  }
  at::Tensor l = logits.clone().contiguous();
  s.sample(l, sched, res, s.guide(sched));  // masks only where a guide hook is set
  std::vector<SeqStepResult> out;
  for (Row* r : rows) out.push_back(r->result);
  return out;
}

SamplingOptions greedy() {
  SamplingOptions o;
  o.temperature = 0;
  return o;
}

TEST(Sampler, GreedyIsArgmaxWithLogprob) {
  Sampler s(kVocab, {}, 0);
  at::Tensor logits = random_logits(1, 1);
  auto r = make_row({1, 2}, {}, greedy());
  SamplingOptions& o = r->opts;
  o.logprobs = 3;
  auto out = run(s, logits, {r.get()});
  const int64_t want = logits[0].argmax().item<int64_t>();
  EXPECT_EQ(out[0].token, want);
  EXPECT_EQ(out[0].rank, 1);
  const float ref = at::log_softmax(logits[0], 0)[want].item<float>();
  EXPECT_NEAR(out[0].logprob, ref, 1e-5);
  ASSERT_EQ(out[0].top.size(), 3u);
  EXPECT_EQ(out[0].top[0].token, want);
  EXPECT_GE(out[0].top[1].logprob, out[0].top[2].logprob);
}

// A guide hook allowing ids {allowed} for every guided row, recording what it was given.
struct FakeGuide {
  std::vector<int32_t> allowed;
  std::vector<GuideRow> seen;
  int calls = 0;
  GuideHook hook() {
    return [this](const GuideHookCall& c) {
      ++calls;
      EXPECT_EQ(c.words, (kVocab + 31) / 32);
      for (int32_t i = 0; i < c.num_rows; ++i) {
        seen.push_back(c.rows[i]);
        int32_t* w = c.bitmask + static_cast<size_t>(i) * c.words;
        std::fill(w, w + c.words, 0);
        for (int32_t t : allowed) w[t / 32] |= static_cast<int32_t>(1u << (t % 32));
      }
    };
  }
};

TEST(Sampler, GuideMasksOnlyGuidedRowsBeforeSamplingAndLogprobs) {
  FakeGuide guide{{3, 33, 47}};
  Sampler s(kVocab, {0}, 5);
  s.set_guide_hook(guide.hook());
  at::Tensor logits = random_logits(3, 11);
  SamplingOptions g = greedy();
  g.guide_key = 7;
  g.logprobs = 4;
  SamplingOptions t;
  t.temperature = 1.3f;
  t.guide_key = 8;
  t.seed = 9;
  auto a = make_row({1}, {4, 5}, g, 2);
  auto free = make_row({1}, {}, greedy());
  auto b = make_row({1}, {}, t);
  auto out = run(s, logits, {a.get(), free.get(), b.get()});
  EXPECT_EQ(guide.calls, 1);  // one call for the step
  ASSERT_EQ(guide.seen.size(), 2u);
  EXPECT_EQ(guide.seen[0].key, 7);
  EXPECT_EQ(guide.seen[0].seq_index, 2);
  EXPECT_EQ(*guide.seen[0].output, (std::vector<int32_t>{4, 5}));
  EXPECT_EQ(guide.seen[1].key, 8);
  // Greedy: the best allowed id, with the log-softmax over the allowed ids only.
  const at::Tensor allowed = at::tensor({3, 33, 47}, at::kLong);
  const at::Tensor sub = logits[0].index_select(0, allowed);
  const int64_t best = allowed[sub.argmax()].item<int64_t>();
  EXPECT_EQ(out[0].token, best);
  EXPECT_NEAR(out[0].logprob, at::log_softmax(sub, 0).max().item<float>(), 1e-5);
  ASSERT_EQ(out[0].top.size(), 4u);
  EXPECT_TRUE(std::isinf(out[0].top[3].logprob));               // only three ids have mass
  EXPECT_EQ(out[1].token, logits[1].argmax().item<int64_t>());  // unguided row untouched
  EXPECT_TRUE(out[2].token == 3 || out[2].token == 33 || out[2].token == 47);
}

TEST(Sampler, RowNormalizersAreLogsumexpAndTheFirstMaximum) {
  const float inf = std::numeric_limits<float>::infinity();
  at::Tensor logits = random_logits(4, 21);
  logits[1].narrow(0, 3, kVocab - 3).fill_(-inf);  // a masked row
  logits[2].fill_(-inf);                           // nothing allowed
  logits[3][9] = inf;
  const auto [lse, best] = Sampler::row_normalizers(logits);
  const at::Tensor want = at::logsumexp(logits.to(at::kDouble), 1);
  EXPECT_NEAR(lse[0].item<float>(), want[0].item<double>(), 1e-5);
  EXPECT_NEAR(lse[1].item<float>(), want[1].item<double>(), 1e-5);
  EXPECT_EQ(lse[2].item<float>(), -inf);
  EXPECT_EQ(lse[3].item<float>(), inf);
  for (int64_t i : {0, 1}) EXPECT_EQ(best[i].item<int64_t>(), logits[i].argmax().item<int64_t>());
  EXPECT_EQ(best[3].item<int64_t>(), 9);
}

TEST(Sampler, GrammarThatOnlyEndsWinsOverMinTokens) {
  FakeGuide guide{{0}};  // the grammar is complete: only EOS (id 0) is allowed
  Sampler s(kVocab, {0}, 5);
  s.set_guide_hook(guide.hook());
  SamplingOptions o = greedy();
  o.guide_key = 1;
  o.min_tokens = 10;  // would forbid EOS too
  auto r = make_row({1}, {2}, o);
  auto out = run(s, random_logits(1, 4), {r.get()});
  EXPECT_EQ(out[0].token, 0);
  EXPECT_NEAR(out[0].logprob, 0.0f, 1e-6);
}

TEST(Sampler, TopKOneEqualsGreedy) {
  Sampler s(kVocab, {}, 3);
  for (int i = 0; i < 20; ++i) {
    at::Tensor logits = random_logits(1, 100 + i);
    SamplingOptions o;
    o.temperature = 1.3f;
    o.top_k = 1;
    auto r = make_row({1}, {}, o);
    EXPECT_EQ(run(s, logits, {r.get()})[0].token, logits[0].argmax().item<int64_t>());
  }
}

TEST(Sampler, SeededRowsIgnoreBatchPosition) {
  SamplingOptions o;
  o.temperature = 1.0f;
  o.top_p = 0.9f;
  o.seed = 42;
  at::Tensor logits = random_logits(3, 5);
  Sampler s1(kVocab, {}, 0), s2(kVocab, {}, 99);
  auto seeded = make_row({1}, {3, 4}, o);
  auto other1 = make_row({1}, {}, SamplingOptions{});
  auto other2 = make_row({1}, {}, SamplingOptions{});
  auto a = run(s1, logits, {seeded.get(), other1.get(), other2.get()});
  at::Tensor moved = at::stack({logits[1], logits[2], logits[0]});
  auto b = run(s2, moved, {other1.get(), other2.get(), seeded.get()});
  EXPECT_EQ(a[0].token, b[2].token);
  // Different seeds sample differently somewhere over many steps.
  int differ = 0;
  for (int step = 0; step < 30; ++step) {
    auto x = make_row({1}, std::vector<int32_t>(step, 1), o);
    SamplingOptions o2 = o;
    o2.seed = 43;
    auto y = make_row({1}, std::vector<int32_t>(step, 1), o2);
    at::Tensor flat = at::zeros({2, kVocab});
    differ +=
        run(s1, flat, {x.get(), y.get()})[0].token != run(s1, flat, {y.get(), x.get()})[0].token;
  }
  EXPECT_GT(differ, 10);
}

TEST(Sampler, BiasAllowedAndBadWords) {
  Sampler s(kVocab, {}, 0);
  at::Tensor logits = random_logits(1, 9);
  SamplingOptions o = greedy();
  o.logit_bias = {{7, 100.0f}};
  auto r = make_row({1}, {}, o);
  EXPECT_EQ(run(s, logits, {r.get()})[0].token, 7);
  o = greedy();
  o.allowed_token_ids = {3, 9};
  r = make_row({1}, {}, o);
  const int want = logits[0][3].item<float>() > logits[0][9].item<float>() ? 3 : 9;
  EXPECT_EQ(run(s, logits, {r.get()})[0].token, want);
  o = greedy();
  const int top = static_cast<int>(logits[0].argmax().item<int64_t>());
  o.bad_words_token_ids = {{5, top}};
  r = make_row({1}, {4, 5}, o);  // output ends with the prefix [5]: top is banned
  EXPECT_NE(run(s, logits, {r.get()})[0].token, top);
  r = make_row({1}, {5, 4}, o);
  EXPECT_EQ(run(s, logits, {r.get()})[0].token, top);
}

TEST(Sampler, MinTokensMasksEosAndStopIds) {
  at::Tensor logits = at::zeros({1, kVocab});
  logits[0][2] = 10;  // eos
  logits[0][11] = 9;  // stop id
  Sampler s(kVocab, {2}, 0);
  SamplingOptions o = greedy();
  o.min_tokens = 2;
  o.stop_token_ids = {11};
  auto r = make_row({1}, {4}, o);
  auto out = run(s, logits, {r.get()});
  EXPECT_NE(out[0].token, 2);
  EXPECT_NE(out[0].token, 11);
  r = make_row({1}, {4, 4}, o);
  EXPECT_EQ(run(s, logits, {r.get()})[0].token, 2);
}

TEST(Sampler, PenaltiesFollowHfAndOpenAi) {
  at::Tensor logits = at::zeros({1, kVocab});
  logits[0][3] = 2.0f;
  logits[0][4] = -2.0f;
  logits[0][5] = 1.9f;
  Sampler s(kVocab, {}, 0);
  SamplingOptions o = greedy();
  o.repetition_penalty = 2.0f;
  o.logprobs = kVocab;
  auto r = make_row({3, 4}, {}, o);
  auto out = run(s, logits, {r.get()});
  EXPECT_EQ(out[0].token, 5);  // 2.0 / 2 = 1.0 < 1.9
  o = greedy();
  o.frequency_penalty = 0.5f;
  o.presence_penalty = 0.1f;
  r = make_row({1}, {3, 3}, o);
  EXPECT_EQ(run(s, logits, {r.get()})[0].token, 5);  // 2.0 - 1.0 - 0.1 < 1.9
}

TEST(Sampler, SamplingMatchesDistribution) {
  at::Tensor logits = at::full({1, kVocab}, -30.0f);
  logits[0][1] = 0.0f;
  logits[0][2] = std::log(3.0f);
  Sampler s(kVocab, {}, 7);
  SamplingOptions o;
  auto r = make_row({1}, {}, o);
  int twos = 0;
  for (int i = 0; i < 2000; ++i) twos += run(s, logits, {r.get()})[0].token == 2;
  EXPECT_NEAR(twos / 2000.0, 0.75, 0.04);
}

TEST(Sampler, PromptLogprobs) {
  at::Tensor logits = random_logits(3, 11);
  auto out = Sampler::prompt_logprobs(logits, {4, 5, 6}, 2);
  ASSERT_EQ(out.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(out[i].size(), 3u);
    EXPECT_EQ(out[i][0].token, 4 + i);
    EXPECT_NEAR(out[i][0].logprob, at::log_softmax(logits[i], 0)[4 + i].item<float>(), 1e-5);
    EXPECT_EQ(out[i][1].token, logits[i].argmax().item<int64_t>());
  }
}

}  // namespace
}  // namespace taco
