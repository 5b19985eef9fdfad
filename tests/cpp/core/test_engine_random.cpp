// Randomized add / step / abort / finish_sequence traffic over tiny caches and random options.
// The fake executor checks every scheduled sequence's KV prefix on each step; here we check the
// reported streams against the deterministic model and that an idle engine holds nothing.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <set>
#include <stdexcept>

#include "engine_harness.h"

namespace taco::test {
namespace {

struct Expect {
  std::vector<int32_t> prompt;
  SamplingOptions opts;
  bool cut = false;  // aborted or finished early: streams may be shorter
};

// The stream a sequence must produce: default tokens, EOS (0) ends it once min_tokens allow.
std::vector<int32_t> model_stream(const Expect& e, int32_t index, int32_t vocab, int32_t max_len) {
  Sequence s;
  s.prompt = std::make_shared<const std::vector<int32_t>>(e.prompt);
  s.index = index;
  while (true) {
    const int32_t t = default_next_token(s, vocab);
    s.output.push_back(t);
    const int32_t n = static_cast<int32_t>(s.output.size());
    if (n >= e.opts.min_tokens && !e.opts.ignore_eos && t == 0) break;
    if (s.len() > max_len || n >= e.opts.max_tokens) break;
  }
  return s.output;
}

struct Coverage {
  int64_t preemptions = 0, swapped_out = 0, prefix_hits = 0, copies = 0, checked = 0, rejected = 0;
  int64_t drafted = 0, accepted = 0;
};

void run_random(uint32_t seed, int num_ops, Coverage* cov) {
  std::mt19937 rng(seed);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const int32_t bs = std::vector<int32_t>{1, 2, 4, 8}[pick(0, 3)];
  const int32_t max_len = pick(8, 40);
  const int32_t vocab = pick(3, 12);  // tiny vocabularies make shared prefixes and EOS common
  FakeExecutorConfig fc{.num_device_blocks = (max_len + bs - 1) / bs + pick(0, 12),
                        .num_cpu_blocks = pick(0, 1) ? pick(1, 30) : 0,
                        .block_size = bs,
                        .vocab = vocab};
  EngineOptions o;
  o.enable_prefix_caching = pick(0, 1);
  o.enable_chunked_prefill = pick(0, 1);
  o.max_num_seqs = pick(1, 6);
  o.max_num_batched_tokens = o.enable_chunked_prefill ? pick(1, 3 * max_len) : max_len + pick(0, 8);
  o.preemption_mode = pick(0, 1) ? PreemptionMode::kSwap : PreemptionMode::kRecompute;
  // Speculation must change nothing reported: drafts come and go with every other feature.
  o.speculative_method = std::vector<std::string>{"", "ngram", "lookahead"}[pick(0, 2)];
  if (!o.speculative_method.empty()) {
    o.num_speculative_tokens = pick(1, 5);
    o.ngram_prompt_lookup_max = pick(1, 3);
    o.ngram_prompt_lookup_min = pick(1, o.ngram_prompt_lookup_max);
  }
  Harness h = make_engine(o, fc, max_len, {0});
  SCOPED_TRACE("seed " + std::to_string(seed) + " bs " + std::to_string(bs) + " blocks " +
               std::to_string(fc.num_device_blocks) + " cpu " + std::to_string(fc.num_cpu_blocks));

  std::map<std::string, Expect> expect;
  std::map<std::string, Collected> acc;
  std::vector<std::string> live;
  int next_id = 0;
  for (int op = 0; op < num_ops; ++op) {
    const int kind = pick(0, 9);
    if (kind <= 2) {
      Expect e;
      e.prompt.resize(pick(1, max_len + 1));  // max_len + 1 is rejected
      for (int32_t& t : e.prompt) t = pick(0, vocab - 1);
      e.opts.n = pick(1, 3) == 1 ? pick(1, 3) : 1;
      e.opts.best_of = e.opts.n + (pick(0, 3) == 0 ? pick(0, 2) : 0);
      e.opts.max_tokens = pick(1, max_len);
      e.opts.min_tokens = pick(0, 2);
      e.opts.ignore_eos = pick(0, 4) == 0;
      e.opts.logprobs = pick(-1, 2);
      e.opts.prompt_logprobs = pick(0, 5) == 0 ? 1 : -1;
      const std::string id = std::to_string(next_id++);
      const int32_t before = h.engine->num_unfinished();
      try {
        h.engine->add_request(id, e.prompt, e.opts);
        expect[id] = e;
        live.push_back(id);
      } catch (const std::invalid_argument&) {
        ++cov->rejected;
        EXPECT_EQ(h.engine->num_unfinished(), before);
      }
    } else if (kind == 3 && !live.empty()) {
      const std::string id = live[pick(0, static_cast<int>(live.size()) - 1)];
      if (h.engine->abort(id)) expect[id].cut = true;
    } else if (kind == 4 && !live.empty()) {
      const std::string id = live[pick(0, static_cast<int>(live.size()) - 1)];
      h.engine->finish_sequence(id, pick(0, 3), FinishReason::kStop);
      expect[id].cut = true;
    } else {
      absorb(acc, h.engine->step());
    }
  }
  for (int i = 0; i < 100000 && h.engine->has_unfinished(); ++i) absorb(acc, h.engine->step());
  ASSERT_FALSE(h.engine->has_unfinished());
  const EngineMetrics m = h.engine->metrics();
  EXPECT_EQ(m.kv_blocks_used, 0);
  EXPECT_EQ(m.cpu_blocks_used, 0);
  EXPECT_EQ(m.num_running + m.num_waiting + m.num_swapped, 0);
  EXPECT_EQ(h.engine->num_unfinished(), 0);
  cov->preemptions += m.num_preemptions;
  cov->swapped_out += m.num_swapped_out;
  cov->prefix_hits += m.prefix_cache_hits;
  cov->copies += h.exec->num_copies;
  cov->drafted += m.spec_decode_num_draft_tokens;
  cov->accepted += m.spec_decode_num_accepted_tokens;
  EXPECT_EQ(m.spec_decode_num_draft_tokens, h.exec->num_drafted);

  for (const auto& [id, e] : expect) {
    if (e.cut) continue;
    const Collected& c = acc[id];
    ++cov->checked;
    EXPECT_TRUE(c.finished) << id;
    EXPECT_EQ(c.num_deltas_after_finish, 0) << id;
    ASSERT_EQ(static_cast<int32_t>(c.tokens.size()), e.opts.n) << id;
    std::set<std::vector<int32_t>> allowed;
    for (int32_t k = 0; k < e.opts.best_of; ++k) allowed.insert(model_stream(e, k, vocab, max_len));
    for (int32_t k = 0; k < e.opts.n; ++k) {
      if (e.opts.best_of == e.opts.n) {
        EXPECT_EQ(c.tokens[k], model_stream(e, k, vocab, max_len)) << id << " seq " << k;
      } else {
        EXPECT_TRUE(allowed.count(c.tokens[k])) << id << " seq " << k;
      }
    }
    if (e.opts.prompt_logprobs >= 0 && e.prompt.size() > 1) {
      EXPECT_EQ(c.num_prompt_logprob_deltas, 1) << id;
      EXPECT_EQ(c.prompt_logprobs.size(), e.prompt.size() - 1) << id;
    }
  }
}

TEST(Random, ThousandsOfOperationsLeaveNothingBehind) {
  Coverage cov;
  for (uint32_t seed = 1; seed <= 100; ++seed) {
    run_random(seed, 500, &cov);
    if (HasFatalFailure() || HasFailure()) break;
  }
  // The traffic must actually exercise the interesting paths.
  EXPECT_GT(cov.preemptions, 0);
  EXPECT_GT(cov.swapped_out, 0);
  EXPECT_GT(cov.prefix_hits, 0);
  EXPECT_GT(cov.copies, 0);
  EXPECT_GT(cov.rejected, 0);
  EXPECT_GT(cov.checked, 1000);
  EXPECT_GT(cov.accepted, 0);
  EXPECT_GT(cov.drafted, cov.accepted);
  std::printf(
      "preemptions %lld swapped %lld prefix hits %lld copies %lld checked %lld "
      "rejected %lld drafted %lld accepted %lld\n",
      (long long)cov.preemptions, (long long)cov.swapped_out, (long long)cov.prefix_hits,
      (long long)cov.copies, (long long)cov.checked, (long long)cov.rejected,
      (long long)cov.drafted, (long long)cov.accepted);
}

}  // namespace
}  // namespace taco::test
