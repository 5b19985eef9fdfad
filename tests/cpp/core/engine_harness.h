// Builds an Engine over a FakeExecutor for tests.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/engine.h"
#include "fake_executor.h"

namespace taco::test {

struct Harness {
  FakeExecutor* exec = nullptr;  // owned by engine
  std::unique_ptr<Engine> engine;
};

inline Harness make_engine(EngineOptions opts, FakeExecutorConfig cfg, int32_t max_model_len,
                           std::vector<int32_t> eos = {}) {
  opts.block_size = cfg.block_size;
  if (!cfg.on_violation) {
    cfg.on_violation = [](const std::string& what) { ADD_FAILURE() << what; };
  }
  auto exec = std::make_unique<FakeExecutor>(cfg);
  Harness h;
  h.exec = exec.get();
  const int32_t vocab = cfg.vocab;
  h.engine = std::make_unique<Engine>(opts, std::move(exec), vocab, std::move(eos), max_model_len);
  return h;
}

inline SamplingOptions sampling(int max_tokens, int n = 1, int best_of = 0) {
  SamplingOptions s;
  s.max_tokens = max_tokens;
  s.n = n;
  s.best_of = best_of > 0 ? best_of : n;
  s.temperature = 1.0f;
  return s;
}

// Expected stream of sequence `index` under default_next_token, without EOS.
inline std::vector<int32_t> expected_stream(const std::vector<int32_t>& prompt, int32_t index,
                                            int32_t max_tokens, int32_t vocab) {
  Sequence s;
  s.prompt = std::make_shared<const std::vector<int32_t>>(prompt);
  s.index = index;
  while (static_cast<int32_t>(s.output.size()) < max_tokens) {
    s.output.push_back(default_next_token(s, vocab));
  }
  return s.output;
}

// Accumulated outputs of one request, rebuilt from deltas as Python would.
struct Collected {
  std::vector<std::vector<int32_t>> tokens;  // by index
  std::vector<FinishReason> finish;
  std::vector<int32_t> stop_token;
  std::vector<double> cumulative;
  std::vector<std::vector<TokenLogprob>> prompt_logprobs;
  int32_t num_prompt_logprob_deltas = 0;
  int32_t num_cached_tokens = -1;
  bool finished = false;
  int32_t num_deltas_after_finish = 0;
};

inline void absorb(std::map<std::string, Collected>& acc, const std::vector<RequestDelta>& deltas) {
  for (const RequestDelta& d : deltas) {
    Collected& c = acc[d.request_id];
    if (c.finished) ++c.num_deltas_after_finish;
    if (c.num_cached_tokens < 0) c.num_cached_tokens = d.num_cached_tokens;
    if (!d.prompt_logprobs.empty()) {
      ++c.num_prompt_logprob_deltas;
      c.prompt_logprobs = d.prompt_logprobs;
    }
    for (const SeqDelta& s : d.seqs) {
      if (static_cast<int32_t>(c.tokens.size()) <= s.index) {
        c.tokens.resize(s.index + 1);
        c.finish.resize(s.index + 1, FinishReason::kNone);
        c.stop_token.resize(s.index + 1, -1);
        c.cumulative.resize(s.index + 1, 0);
      }
      if (s.replace) c.tokens[s.index].clear();
      std::vector<int32_t>& toks = c.tokens[s.index];
      toks.insert(toks.end(), s.new_token_ids.begin(), s.new_token_ids.end());
      EXPECT_EQ(s.new_logprobs.size(), s.new_token_ids.size());
      c.finish[s.index] = s.finish;
      c.stop_token[s.index] = s.stop_token;
      c.cumulative[s.index] = s.cumulative_logprob;
    }
    c.finished |= d.finished;
  }
}

// Steps until idle (bounded), returning everything reported.
inline std::map<std::string, Collected> run_all(Engine& e, int max_steps = 100000) {
  std::map<std::string, Collected> acc;
  for (int i = 0; i < max_steps && e.has_unfinished(); ++i) absorb(acc, e.step());
  EXPECT_FALSE(e.has_unfinished()) << "engine did not drain";
  return acc;
}

inline std::vector<int32_t> iota_prompt(int32_t n, int32_t start, int32_t vocab = 100) {
  std::vector<int32_t> p(n);
  for (int32_t i = 0; i < n; ++i) p[i] = (start + i * 7) % vocab;
  return p;
}

}  // namespace taco::test
