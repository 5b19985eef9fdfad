// Whether a sequence that just received a token is done, in vLLM's order: min_tokens first, then
// EOS, stop token ids, max_model_len and max_tokens. Stop strings are checked in Python.
#pragma once

#include <cstdint>
#include <vector>

#include "core/sampling_options.h"
#include "core/sequence.h"

namespace taco {

// Why output token number num_out (1-based) `token`, appended to a prompt of prompt_len tokens,
// ends its sequence; kNone when it does not. *stop_token gets the id when a stop_token_id did.
FinishReason stop_reason_for(int32_t token, int32_t num_out, int32_t prompt_len,
                             const SamplingOptions& opts, const std::vector<int32_t>& eos_ids,
                             int32_t max_model_len, int32_t* stop_token);

// Sets seq.finish / seq.stop_token / seq.status when the last output token ends the sequence.
// Returns true then.
bool check_stop(Sequence& seq, const SamplingOptions& opts, const std::vector<int32_t>& eos_ids,
                int32_t max_model_len);

}  // namespace taco
