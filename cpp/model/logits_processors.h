// Per-request edits of one logits row before sampling, in SamplingOptions' order: allowed ids,
// logit bias, bad words, min_tokens (EOS / stop ids masked), then repetition, presence and
// frequency penalties. Pure functions over a float row of vocab_size entries.
#pragma once

#include <cstdint>
#include <vector>

#include "core/sampling_options.h"
#include "core/sequence.h"

namespace taco {

// Whether process_logits (or the caller's hook) would change this row at all.
bool changes_logits(const SamplingOptions& opts, const Sequence& seq);

// Applies every enabled processor to row[0, vocab_size). `eos_token_ids` are the model's EOS ids.
// Token ids outside the vocabulary (not expected: Python validates them) are ignored.
void process_logits(float* row, int32_t vocab_size, const SamplingOptions& opts,
                    const Sequence& seq, const std::vector<int32_t>& eos_token_ids);

}  // namespace taco
