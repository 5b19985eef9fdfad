// A sequence: one prompt's continuation. A request owns n (or best_of / beam width) of them,
// all sharing the prompt and, through copy-on-write, its KV blocks.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace taco {

// The one lifecycle state of requests and of their sequences: a request is in the state of its
// unfinished sequences, and finished once all of them are.
enum class SeqStatus : uint8_t { kWaiting, kRunning, kSwapped, kFinished };

enum class FinishReason : uint8_t { kNone, kLength, kStop, kAbort };

struct Sequence {
  int64_t id = 0;
  int32_t index = 0;  // position among the request's sequences (CompletionOutput.index)
  std::shared_ptr<const std::vector<int32_t>> prompt;
  std::vector<int32_t> output;
  SeqStatus status = SeqStatus::kWaiting;
  FinishReason finish = FinishReason::kNone;
  int32_t stop_token = -1;        // the stop id that ended it, for stop_reason
  double cumulative_logprob = 0;  // sum of sampled tokens' logprobs
  int32_t num_computed = 0;       // tokens whose K/V are in the cache
  // Seeds the prefix cache's block hashes: sequences of different adapters never share KV.
  uint64_t cache_salt = 0;

  int32_t prompt_len() const { return static_cast<int32_t>(prompt->size()); }
  int32_t len() const { return prompt_len() + static_cast<int32_t>(output.size()); }
  int32_t token_at(int32_t i) const {
    return i < prompt_len() ? (*prompt)[i] : output[i - prompt_len()];
  }
  bool finished() const { return status == SeqStatus::kFinished; }
};

}  // namespace taco
