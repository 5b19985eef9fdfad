// Prompt lookup: drafts for speculative decoding copied from a sequence's own context.
#pragma once

#include <cstdint>
#include <vector>

#include "core/sequence.h"

namespace taco {

// Finds the longest suffix of seq's tokens (prompt then output), between min_n and max_n tokens,
// that also occurs earlier in them, taking its latest earlier occurrence, and appends to draft
// the up to max_tokens tokens that followed it there. Appends nothing when no suffix of min_n
// tokens recurs. One backward scan over the context.
void ngram_lookup(const Sequence& seq, int32_t max_n, int32_t min_n, int32_t max_tokens,
                  std::vector<int32_t>* draft);

}  // namespace taco
