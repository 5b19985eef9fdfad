#include "cpu/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/mix64.h"

namespace taco::cpu::sampling {
namespace {

// Descending by value, ties by lower id.
struct ByValue {
  const float* row;
  bool operator()(int32_t a, int32_t b) const {
    return row[a] > row[b] || (row[a] == row[b] && a < b);
  }
};

}  // namespace

double seeded_uniform(uint64_t seed, int32_t index, int32_t step) {
  uint64_t h = mix64(seed);
  h = mix64(h ^ static_cast<uint64_t>(static_cast<uint32_t>(index)));
  h = mix64(h ^ (static_cast<uint64_t>(static_cast<uint32_t>(step)) << 32));
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

int32_t argmax(const float* row, int64_t V) {
  return static_cast<int32_t>(std::max_element(row, row + V) - row);
}

std::vector<int32_t> top_ids(const float* score, int64_t V, const std::vector<int32_t>* ids,
                             int k) {
  std::vector<int32_t> order;
  if (k <= 0) return order;
  if (ids) {
    order = *ids;
  } else {
    order.resize(V);
    std::iota(order.begin(), order.end(), 0);
  }
  const size_t n = std::min<size_t>(std::max(k, 0), order.size());
  std::partial_sort(order.begin(), order.begin() + n, order.end(), ByValue{score});
  order.resize(n);
  return order;
}

std::vector<TokenLogprob> top_logprobs(const float* row, int64_t V, int k, const LogSoftmax& ls) {
  std::vector<TokenLogprob> out;
  for (int32_t t : top_ids(row, V, nullptr, k)) out.push_back({t, ls.logprob(row[t])});
  return out;
}

void apply_token_bitmask(float* row, int64_t V, const int32_t* bits) {
  constexpr float kMasked = -std::numeric_limits<float>::infinity();
  const int64_t whole = V / 32;
  for (int64_t w = 0; w < whole; ++w) {
    const auto word = static_cast<uint32_t>(bits[w]);
    if (word == 0xffffffffu) continue;
    float* part = row + w * 32;
    if (word == 0) {
      std::fill(part, part + 32, kMasked);
      continue;
    }
    for (int b = 0; b < 32; ++b) part[b] = ((word >> b) & 1u) ? part[b] : kMasked;
  }
  const auto last = static_cast<uint32_t>(whole < (V + 31) / 32 ? bits[whole] : ~0u);
  for (int64_t t = whole * 32; t < V; ++t) {
    if (!((last >> (t - whole * 32)) & 1u)) row[t] = kMasked;
  }
}

bool all_masked(const float* row, int64_t V) {
  return std::all_of(row, row + V,
                     [](float x) { return x == -std::numeric_limits<float>::infinity(); });
}

float row_logsumexp(const float* row, int64_t V) {
  const float mx = *std::max_element(row, row + V);
  if (mx == -INFINITY) return mx;
  double sum = 0;
  for (int64_t t = 0; t < V; ++t) sum += std::exp(static_cast<double>(row[t] - mx));
  return mx + static_cast<float>(std::log(sum));
}

namespace {

// Smallest descending prefix of ids whose probability mass reaches top_p of the total; sorts
// progressively larger prefixes so the usual peaked distributions never sort the whole vocab.
size_t top_p_prefix(std::vector<int32_t>& ids, const float* prob, double top_p, double total) {
  size_t m = std::min<size_t>(ids.size(), 256);
  while (true) {
    std::partial_sort(ids.begin(), ids.begin() + m, ids.end(), ByValue{prob});
    double cum = 0;
    for (size_t i = 0; i < m; ++i) {
      cum += prob[ids[i]];
      if (cum >= top_p * total) return i + 1;
    }
    if (m == ids.size()) return m;
    m = std::min(ids.size(), m * 8);
  }
}

}  // namespace

bool Kept::has(int32_t t) const {
  return !filtered || std::binary_search(ids.begin(), ids.end(), t);
}

Kept keep_ids(const float* prob, int64_t V, const SamplingOptions& o) {
  Kept k;
  k.filtered = (o.top_k > 0 && o.top_k < V) || o.top_p < 1.0f || o.min_p > 0.0f;
  if (!k.filtered) {
    for (int64_t t = 0; t < V; ++t) k.total += prob[t];
    return k;
  }
  std::vector<int32_t>& ids = k.ids;
  ids.reserve(V);
  for (int64_t t = 0; t < V; ++t) {
    if (prob[t] > 0) ids.push_back(static_cast<int32_t>(t));
  }
  if (o.top_k > 0 && static_cast<size_t>(o.top_k) < ids.size()) {
    std::nth_element(ids.begin(), ids.begin() + o.top_k, ids.end(), ByValue{prob});
    ids.resize(o.top_k);
  }
  if (o.top_p < 1.0f && !ids.empty()) {
    double total = 0;
    for (int32_t t : ids) total += prob[t];
    ids.resize(top_p_prefix(ids, prob, o.top_p, total));
  }
  if (o.min_p > 0.0f) {
    const float cut = o.min_p * *std::max_element(prob, prob + V);
    ids.erase(std::remove_if(ids.begin(), ids.end(), [&](int32_t t) { return prob[t] < cut; }),
              ids.end());
  }
  if (ids.empty()) ids.push_back(argmax(prob, V));
  std::sort(ids.begin(), ids.end());
  for (int32_t t : ids) k.total += prob[t];
  return k;
}

int32_t draw(const float* prob, int64_t V, const Kept& k, double u) {
  const size_t n = k.filtered ? k.ids.size() : static_cast<size_t>(V);
  auto id_at = [&](size_t i) { return k.filtered ? k.ids[i] : static_cast<int32_t>(i); };
  const double target = u * k.total;
  double cum = 0;
  int32_t last = -1;
  for (size_t i = 0; i < n; ++i) {
    const int32_t t = id_at(i);
    if (prob[t] <= 0) continue;
    cum += prob[t];
    last = t;
    if (cum > target) return t;
  }
  return last >= 0 ? last : argmax(prob, V);
}

bool reports_logits(LogprobsMode m) {
  return m == LogprobsMode::kProcessedLogits || m == LogprobsMode::kRawLogits;
}
bool reports_processed(LogprobsMode m) {
  return m == LogprobsMode::kProcessedLogprobs || m == LogprobsMode::kProcessedLogits;
}

void report_plain(const float* src, int64_t V, float lse, bool as_logits, int k, int32_t token,
                  bool want_rank, SeqStepResult& r) {
  auto value = [&](int32_t t) { return as_logits ? src[t] : src[t] - lse; };
  r.logprob = value(token);
  if (want_rank) {
    int32_t above = 0;
    for (int64_t t = 0; t < V; ++t) above += src[t] > src[token];
    r.rank = 1 + above;
  }
  for (int32_t t : top_ids(src, V, nullptr, k)) r.top.push_back({t, value(t)});
}

void report_processed(const float* row, const float* prob, int64_t V, const Kept& kept,
                      float temperature, bool as_logits, int k, int32_t token, bool want_rank,
                      SeqStepResult& r) {
  const double log_total = std::log(kept.total);
  auto value = [&](int32_t t) -> float {
    if (!kept.has(t)) return -INFINITY;
    if (as_logits) return row[t] / temperature;
    return static_cast<float>(std::log(static_cast<double>(prob[t])) - log_total);
  };
  r.logprob = value(token);
  if (want_rank) {
    int32_t above = 0;
    if (kept.filtered) {
      for (int32_t t : kept.ids) above += prob[t] > prob[token];
    } else {
      for (int64_t t = 0; t < V; ++t) above += prob[t] > prob[token];
    }
    r.rank = 1 + above;
  }
  for (int32_t t : top_ids(prob, V, kept.filtered ? &kept.ids : nullptr, k)) {
    r.top.push_back({t, value(t)});
  }
}

}  // namespace taco::cpu::sampling
