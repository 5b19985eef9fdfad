// A deterministic Executor for engine tests, in C++ (engine_harness.h) and in Python (the core
// under the Python API tests, bound as taco_llm._C.testing). It keeps a fake KV cache (one int64
// per slot that encodes the token and position written there), applies swaps and copies as a
// real runner must (swap out, swap in, copy, then the forward), and checks that every scheduled
// sequence finds its whole computed prefix intact in the blocks it was given. A broken rule is
// reported to FakeExecutorConfig::on_violation (default: throw std::logic_error).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/engine.h"
#include "core/executor.h"
#include "core/mix64.h"
#include "core/sequence.h"

namespace taco::test {

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
  // Called with a description of each broken scheduling or KV rule; empty: throw logic_error.
  std::function<void(const std::string&)> on_violation;
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
      check(!(decode && seen_prefill), "decodes must come before prefill chunks");
      seen_prefill |= !decode;
      tokens += ss.num_new;
      results.push_back(run_one(ss));
    }
    check(tokens == out.num_batched_tokens, "num_batched_tokens differs from the scheduled sum");
    std::vector<int64_t> loras;
    for (const ScheduledSeq& ss : out.seqs) {
      const int64_t id = ss.sampling->lora_id;
      if (id != 0 && std::find(loras.begin(), loras.end(), id) == loras.end()) loras.push_back(id);
    }
    max_step_loras = std::max<int32_t>(max_step_loras, static_cast<int32_t>(loras.size()));
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
  int32_t max_step_loras = 0;  // distinct LoRA ids in one step

  // Adapters: any non-empty path loads (rank 8; prompt adapters have 2 virtual tokens).
  AdapterInfo load_adapter(AdapterKind kind, int64_t id, const std::string& path) override {
    if (path.empty()) throw std::invalid_argument("adapter: empty path");
    AdapterInfo a;
    a.id = id;
    a.rank = kind == AdapterKind::kLora ? 8 : 0;
    a.num_virtual_tokens = kind == AdapterKind::kPromptAdapter ? 2 : 0;
    return a;
  }
  int64_t computed_tokens = 0;
  int64_t num_drafted = 0;           // drafted tokens verified
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

  // Reports a broken rule; returns ok.
  bool check(bool ok, const std::string& what) {
    if (ok) return true;
    if (cfg_.on_violation) {
      cfg_.on_violation(what);
    } else {
      throw std::logic_error("fake executor: " + what);
    }
    return false;
  }

  void check_layout(const ScheduledSeq& ss) {
    const int32_t bs = cfg_.block_size;
    const Sequence& s = *ss.seq;
    const int32_t end = ss.num_computed + ss.num_new;
    const auto drafted = static_cast<int32_t>(ss.draft.size());
    if (!check(ss.seq_id == s.id, "seq_id differs from the sequence's id") ||
        !check(ss.num_new >= 1 + drafted, "a scheduled sequence computes no token") ||
        !check(drafted == 0 || s.len() - ss.num_computed == 1, "drafts on a prefill chunk") ||
        !check(end <= s.len() + drafted, "scheduled past the sequence's length") ||
        !check(ss.do_sample == (end == s.len() + drafted),
               "do_sample must be set exactly at the end") ||
        !check(static_cast<int32_t>(ss.block_table.size()) == (end + bs - 1) / bs,
               "block table size") ||
        !check(static_cast<int32_t>(ss.slot_mapping.size()) == ss.num_new, "slot mapping size")) {
      return;
    }
    for (int32_t i = 0; i < ss.num_new; ++i) {
      const int32_t pos = ss.num_computed + i;
      if (!check(ss.slot_mapping[i] == int64_t{ss.block_table[pos / bs]} * bs + pos % bs,
                 "slot mapping disagrees with the block table")) {
        return;
      }
    }
    // The cached prefix must be exactly this sequence's tokens.
    for (int32_t pos = 0; pos < ss.num_computed; ++pos) {
      const int64_t slot = int64_t{ss.block_table[pos / bs]} * bs + pos % bs;
      if (device_[slot] != encode(s.token_at(pos), pos)) {
        std::ostringstream what;
        what << "seq " << s.id << " position " << pos << " has wrong KV";
        check(false, what.str());
        return;
      }
    }
  }

  // As the model runner verifies drafts: one sample after the last token and after each drafted
  // token (the sequence extended by the drafts before it); the drafts are kept while each equals
  // the token sampled before it.
  SeqStepResult run_one(const ScheduledSeq& ss) {
    const Sequence& s = *ss.seq;
    for (int32_t i = 0; i < ss.num_new; ++i) {
      const int32_t pos = ss.num_computed + i;
      const int32_t token = pos < s.len() ? s.token_at(pos) : ss.draft[pos - s.len()];
      device_[ss.slot_mapping[i]] = encode(token, pos);
    }
    computed_tokens += ss.num_new;
    chunk_sizes.push_back(ss.num_new);
    num_drafted += static_cast<int64_t>(ss.draft.size());
    SeqStepResult r = sample_one(ss, s);
    Sequence extended = s;
    for (int32_t drafted : ss.draft) {
      if (drafted != (r.next.empty() ? r.token : r.next.back().token)) break;
      extended.output.push_back(drafted);
      r.next.push_back(sample_one(ss, extended));
    }
    return r;
  }

  SeqStepResult sample_one(const ScheduledSeq& ss, const Sequence& s) {
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

}  // namespace taco::test
