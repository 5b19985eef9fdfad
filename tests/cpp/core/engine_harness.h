// Builds an Engine over a FakeExecutor for tests.
#pragma once

#include <memory>

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

}  // namespace taco::test
