#include "core/ngram_lookup.h"

#include <algorithm>

namespace taco {

void ngram_lookup(const Sequence& seq, int32_t max_n, int32_t min_n, int32_t max_tokens,
                  std::vector<int32_t>* draft) {
  const int32_t len = seq.len();
  if (len < 2 || max_tokens <= 0 || min_n < 1 || max_n < min_n) return;
  const int32_t last = seq.token_at(len - 1);
  int32_t best_len = 0;
  int32_t best_end = -1;  // position of the occurrence's last token
  // Candidate ends from the latest backwards: a longer match wins, the latest among equals.
  for (int32_t end = len - 2; end >= 0; --end) {
    if (seq.token_at(end) != last) continue;
    int32_t n = 1;
    while (n < max_n && end - n >= 0 && seq.token_at(end - n) == seq.token_at(len - 1 - n)) ++n;
    if (n > best_len) {
      best_len = n;
      best_end = end;
      if (n == max_n) break;
    }
  }
  if (best_len < min_n) return;
  const int32_t stop = std::min(len, best_end + 1 + max_tokens);
  for (int32_t p = best_end + 1; p < stop; ++p) draft->push_back(seq.token_at(p));
}

}  // namespace taco
