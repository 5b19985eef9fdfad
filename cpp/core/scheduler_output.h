// What one engine step asks the model runner to do. Plain data: no ATen.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace taco {

struct Sequence;
struct SamplingOptions;

// One sequence's share of a step. Tokens [num_computed, num_computed + num_new) of the sequence
// (prompt followed by output) are computed now; the first num_computed are already in the KV cache.
struct ScheduledSeq {
  int64_t seq_id = 0;
  const Sequence* seq = nullptr;              // token ids, generator state; valid during execute
  const SamplingOptions* sampling = nullptr;  // the request's options
  int32_t num_computed = 0;
  int32_t num_new = 0;
  bool do_sample = false;             // the chunk reaches the last known token: sample the next one
  bool want_prompt_logprobs = false;  // return logprobs of prompt tokens covered by this chunk
  std::vector<int32_t> block_table;   // device block ids covering num_computed + num_new tokens
  std::vector<int64_t> slot_mapping;  // [num_new] cache slot (block * block_size + offset)
  // Speculative decoding: tokens drafted to follow the sequence's last one. They are the last
  // draft.size() of the num_new tokens computed (positions from seq->len() on), and the runner
  // samples after each of them too: SeqStepResult::next holds the accepted continuation.
  std::vector<int32_t> draft;
};

// Decodes come first, then prefill chunks; the runner keeps that order in its flat batch.
// The runner moves blocks before the forward and in this order: swap_out (its device blocks may
// be reused by this very step), swap_in, then copy. seqs may be empty when a step only swaps.
struct SchedulerOutput {
  std::vector<ScheduledSeq> seqs;
  std::vector<std::pair<int32_t, int32_t>> swap_in;   // (cpu block, device block)
  std::vector<std::pair<int32_t, int32_t>> swap_out;  // (device block, cpu block)
  std::vector<std::pair<int32_t, int32_t>> copy;      // (src device block, dst device block): CoW
  int32_t num_batched_tokens = 0;
  bool empty() const { return seqs.empty() && swap_in.empty() && swap_out.empty() && copy.empty(); }
};

}  // namespace taco
