// A deterministic Executor for engine tests. It keeps a fake KV cache (one int64 per slot that
// encodes the token and position written there), applies swaps and copies as a real runner
// must (swap out, swap in, copy, then the forward), and checks that every scheduled sequence
// finds its whole computed prefix intact in the blocks it was given.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/engine.h"
#include "core/executor.h"
#include "core/sequence.h"

namespace taco::test {

inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Next token from the whole sequence so far and its index: batch and chunking never matter.
inline int32_t default_next_token(const Sequence& s, int32_t vocab) {
  uint64_t h = mix64(static_cast<uint64_t>(s.index) + 1);
  for (int32_t i = 0; i < s.len(); ++i) h = mix64(h ^ static_cast<uint32_t>(s.token_at(i)));
  return static_cast<int32_t>(h % static_cast<uint64_t>(vocab));
}

struct FakeExecutorConfig {
  int32_t num_device_blocks = 64;
  int32_t num_cpu_blocks = 0;
  int32_t block_size = 4;
  int32_t vocab = 100;
  std::function<int32_t(const Sequence&)> next_token;  // empty: default_next_token
  // For beam search requests: the candidates (token, logprob), descending, for a sequence.
  std::function<std::vector<TokenLogprob>(const Sequence&)> beam_candidates;
};

class FakeExecutor : public Executor {
 public:
  explicit FakeExecutor(FakeExecutorConfig cfg)
      : cfg_(std::move(cfg)),
        device_(static_cast<size_t>(cfg_.num_device_blocks) * cfg_.block_size, -1),
        cpu_(static_cast<size_t>(cfg_.num_cpu_blocks) * cfg_.block_size, -1) {}

  int32_t num_device_blocks() const override { return cfg_.num_device_blocks; }
  int32_t num_cpu_blocks() const override { return cfg_.num_cpu_blocks; }
  int32_t block_size() const override { return cfg_.block_size; }

  std::vector<SeqStepResult> execute(const SchedulerOutput& out) override {
    ++num_calls;
    num_copies += static_cast<int64_t>(out.copy.size());
    num_swap_out_blocks += static_cast<int64_t>(out.swap_out.size());
    num_swap_in_blocks += static_cast<int64_t>(out.swap_in.size());
    for (auto [d, c] : out.swap_out) move_block(device_, d, cpu_, c);
    for (auto [c, d] : out.swap_in) move_block(cpu_, c, device_, d);
    for (auto [src, dst] : out.copy) move_block(device_, src, device_, dst);
    int32_t tokens = 0;
    bool seen_prefill = false;
    std::vector<SeqStepResult> results;
    for (const ScheduledSeq& ss : out.seqs) {
      check_layout(ss);
      const bool decode = ss.seq->len() - ss.num_computed == 1;
      EXPECT_FALSE(decode && seen_prefill) << "decodes must come before prefill chunks";
      seen_prefill |= !decode;
      tokens += ss.num_new;
      results.push_back(run_one(ss));
    }
    EXPECT_EQ(tokens, out.num_batched_tokens);
    max_batched_tokens = std::max(max_batched_tokens, tokens);
    max_batch_seqs = std::max<int32_t>(max_batch_seqs, static_cast<int32_t>(out.seqs.size()));
    return results;
  }

  int64_t num_calls = 0;
  int64_t num_copies = 0;
  int64_t num_swap_out_blocks = 0;
  int64_t num_swap_in_blocks = 0;
  int32_t max_batched_tokens = 0;
  int32_t max_batch_seqs = 0;
  int64_t computed_tokens = 0;
  std::vector<int32_t> chunk_sizes;  // num_new of every scheduled sequence, in order

 private:
  static int64_t encode(int32_t token, int32_t pos) {
    return (int64_t{pos} << 32) | uint32_t(token);
  }

  void move_block(const std::vector<int64_t>& from, int32_t fb, std::vector<int64_t>& to,
                  int32_t tb) {
    const int32_t bs = cfg_.block_size;
    for (int32_t k = 0; k < bs; ++k) to[size_t(tb) * bs + k] = from[size_t(fb) * bs + k];
  }

  void check_layout(const ScheduledSeq& ss) {
    const int32_t bs = cfg_.block_size;
    const Sequence& s = *ss.seq;
    ASSERT_EQ(ss.seq_id, s.id);
    ASSERT_GE(ss.num_new, 1);
    ASSERT_LE(ss.num_computed + ss.num_new, s.len());
    ASSERT_EQ(ss.do_sample, ss.num_computed + ss.num_new == s.len());
    const int32_t end = ss.num_computed + ss.num_new;
    ASSERT_EQ(static_cast<int32_t>(ss.block_table.size()), (end + bs - 1) / bs);
    ASSERT_EQ(static_cast<int32_t>(ss.slot_mapping.size()), ss.num_new);
    for (int32_t i = 0; i < ss.num_new; ++i) {
      const int32_t pos = ss.num_computed + i;
      ASSERT_EQ(ss.slot_mapping[i], int64_t{ss.block_table[pos / bs]} * bs + pos % bs);
    }
    // The cached prefix must be exactly this sequence's tokens.
    for (int32_t pos = 0; pos < ss.num_computed; ++pos) {
      const int64_t slot = int64_t{ss.block_table[pos / bs]} * bs + pos % bs;
      ASSERT_EQ(device_[slot], encode(s.token_at(pos), pos))
          << "seq " << s.id << " position " << pos << " has wrong KV";
    }
  }

  SeqStepResult run_one(const ScheduledSeq& ss) {
    const Sequence& s = *ss.seq;
    for (int32_t i = 0; i < ss.num_new; ++i) {
      const int32_t pos = ss.num_computed + i;
      device_[ss.slot_mapping[i]] = encode(s.token_at(pos), pos);
    }
    computed_tokens += ss.num_new;
    chunk_sizes.push_back(ss.num_new);
    SeqStepResult r;
    r.seq_id = ss.seq_id;
    if (ss.want_prompt_logprobs) {
      const int32_t end = std::min(ss.num_computed + ss.num_new, s.prompt_len());
      for (int32_t pos = std::max(ss.num_computed, 1); pos < end; ++pos) {
        r.prompt_logprobs.push_back({{s.token_at(pos), -0.5f}});
      }
    }
    if (ss.do_sample && ss.sampling->use_beam_search && cfg_.beam_candidates) {
      r.top = cfg_.beam_candidates(s);
      r.token = r.top.front().token;
      r.logprob = r.top.front().logprob;
    } else if (ss.do_sample) {
      r.token = cfg_.next_token ? cfg_.next_token(s) : default_next_token(s, cfg_.vocab);
      r.logprob = -static_cast<float>(mix64(uint64_t(r.token) * 31 + s.index) % 1000) / 100.0f;
      r.rank = 1;
      const int32_t k = ss.sampling->logprobs > 0 ? ss.sampling->logprobs : 0;
      for (int32_t j = 0; j < k + 2; ++j) {
        r.top.push_back({(r.token + j) % cfg_.vocab, r.logprob - j});
      }
    }
    return r;
  }

  FakeExecutorConfig cfg_;
  std::vector<int64_t> device_;
  std::vector<int64_t> cpu_;
};

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
