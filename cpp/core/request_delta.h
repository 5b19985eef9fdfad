// Turns a request's progress since the last report into a RequestDelta.
#pragma once

#include "core/engine.h"
#include "core/request.h"

namespace taco {

// Fills d with what r has not reported yet and marks it reported. Sequences stream their new
// tokens, except when best_of > n (unless stream_best_of): then nothing streams, and at the end the
// n sequences with the highest cumulative logprob are sent whole (replace = true) as indices
// 0..n-1; likewise, for beam search, the n best hypotheses by beam score. Returns false when there
// is nothing to report.
bool build_delta(Request& r, RequestDelta* d);

}  // namespace taco
