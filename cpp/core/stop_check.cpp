#include "core/stop_check.h"

#include <algorithm>

namespace taco {

namespace {

bool contains(const std::vector<int32_t>& ids, int32_t token) {
  return std::find(ids.begin(), ids.end(), token) != ids.end();
}

}  // namespace

FinishReason stop_reason_for(int32_t token, int32_t num_out, int32_t prompt_len,
                             const SamplingOptions& opts, const std::vector<int32_t>& eos_ids,
                             int32_t max_model_len, int32_t* stop_token) {
  if (num_out >= opts.min_tokens) {
    if (!opts.ignore_eos && contains(eos_ids, token)) return FinishReason::kStop;
    if (contains(opts.stop_token_ids, token)) {
      *stop_token = token;
      return FinishReason::kStop;
    }
  }
  // The last sampled token needs no cache slot: a sequence may reach max_model_len + 1 tokens.
  if (prompt_len + num_out > max_model_len) return FinishReason::kLength;
  if (num_out >= opts.max_tokens) return FinishReason::kLength;
  return FinishReason::kNone;
}

bool check_stop(Sequence& seq, const SamplingOptions& opts, const std::vector<int32_t>& eos_ids,
                int32_t max_model_len) {
  if (seq.output.empty()) return false;
  const FinishReason reason =
      stop_reason_for(seq.output.back(), static_cast<int32_t>(seq.output.size()), seq.prompt_len(),
                      opts, eos_ids, max_model_len, &seq.stop_token);
  if (reason == FinishReason::kNone) return false;
  seq.finish = reason;
  seq.status = SeqStatus::kFinished;
  return true;
}

}  // namespace taco
