#include "model/sampler.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/sampling_options.h"
#include "core/sequence.h"
#include "model/logits_processors.h"

namespace taco {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform in [0, 1) from (seed, sequence index, output length) alone.
double seeded_uniform(uint64_t seed, int32_t index, int32_t step) {
  uint64_t h = splitmix64(seed);
  h = splitmix64(h ^ static_cast<uint64_t>(static_cast<uint32_t>(index)));
  h = splitmix64(h ^ (static_cast<uint64_t>(static_cast<uint32_t>(step)) << 32));
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

// logprob(t) = row[t] - lse.
struct LogSoftmax {
  float lse = 0;
  float logprob(float x) const { return x - lse; }
};

int32_t argmax(const float* row, int64_t V) {
  return static_cast<int32_t>(std::max_element(row, row + V) - row);  // first maximum, as torch
}

// Descending by value, ties by lower id.
struct ByValue {
  const float* row;
  bool operator()(int32_t a, int32_t b) const {
    return row[a] > row[b] || (row[a] == row[b] && a < b);
  }
};

std::vector<TokenLogprob> top_logprobs(const float* row, int64_t V, int k, const LogSoftmax& ls) {
  k = static_cast<int>(std::min<int64_t>(k, V));
  std::vector<int32_t> ids(V);
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), ByValue{row});
  std::vector<TokenLogprob> out(k);
  for (int i = 0; i < k; ++i) out[i] = {ids[i], ls.logprob(row[ids[i]])};
  return out;
}

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

// prob: softmax(row / temperature). Top-k, top-p, min-p filtering, then inverse-CDF sampling
// with uniform u over the kept ids in id order, so the result depends only on the row and u.
int32_t sample_from_probs(const float* prob, int64_t V, const SamplingOptions& o, double u) {
  const bool filter = (o.top_k > 0 && o.top_k < V) || o.top_p < 1.0f || o.min_p > 0.0f;
  std::vector<int32_t> ids;
  if (filter) {
    ids.reserve(V);
    for (int64_t t = 0; t < V; ++t) {
      if (prob[t] > 0) ids.push_back(static_cast<int32_t>(t));
    }
    if (ids.empty()) return argmax(prob, V);
    if (o.top_k > 0 && static_cast<size_t>(o.top_k) < ids.size()) {
      std::nth_element(ids.begin(), ids.begin() + o.top_k, ids.end(), ByValue{prob});
      ids.resize(o.top_k);
    }
    if (o.top_p < 1.0f) {
      double total = 0;
      for (int32_t t : ids) total += prob[t];
      ids.resize(top_p_prefix(ids, prob, o.top_p, total));
    }
    if (o.min_p > 0.0f) {
      const float cut = o.min_p * *std::max_element(prob, prob + V);
      ids.erase(std::remove_if(ids.begin(), ids.end(), [&](int32_t t) { return prob[t] < cut; }),
                ids.end());
    }
    std::sort(ids.begin(), ids.end());
  }
  const size_t n = filter ? ids.size() : static_cast<size_t>(V);
  auto id_at = [&](size_t i) { return filter ? ids[i] : static_cast<int32_t>(i); };
  double total = 0;
  for (size_t i = 0; i < n; ++i) total += prob[id_at(i)];
  const double target = u * total;
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

}  // namespace

Sampler::Sampler(int32_t vocab_size, std::vector<int32_t> eos_token_ids, uint64_t seed)
    : vocab_size_(vocab_size), eos_token_ids_(std::move(eos_token_ids)), rng_(seed) {}

void Sampler::sample(at::Tensor& logits, const std::vector<const ScheduledSeq*>& rows,
                     const std::vector<SeqStepResult*>& results) {
  TORCH_CHECK(logits.scalar_type() == at::kFloat && logits.is_contiguous() && logits.dim() == 2,
              "sampler needs contiguous float32 logits [N, V]");
  const int64_t N = logits.size(0);
  const int64_t V = std::min<int64_t>(logits.size(1), vocab_size_);
  const int64_t stride = logits.size(1);
  TORCH_CHECK(static_cast<size_t>(N) == rows.size() && rows.size() == results.size());
  float* base = logits.data_ptr<float>();
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const SamplingOptions& o = *rows[i]->sampling;
      float* row = base + i * stride;
      process_logits(row, static_cast<int32_t>(V), o, *rows[i]->seq, eos_token_ids_);
      if (o.use_beam_search && o.temperature > 0.0f && o.temperature != 1.0f) {
        const float inv = 1.0f / o.temperature;
        for (int64_t t = 0; t < V; ++t) row[t] *= inv;
      }
    }
  });
  at::Tensor valid = logits.narrow(1, 0, V);
  // Batched and vectorized: log-normalizers of the processed logits, and the temperature-scaled
  // probabilities of the rows that sample.
  at::Tensor lse = at::logsumexp(valid, 1).contiguous();
  std::vector<float> temperature(N, 1.0f);
  std::vector<double> u(N, 0.0);
  bool any_random = false;
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  for (int64_t i = 0; i < N; ++i) {  // the engine generator's numbers are drawn in batch order
    const SamplingOptions& o = *rows[i]->sampling;
    if (o.greedy()) continue;
    any_random = true;
    temperature[i] = o.temperature;
    u[i] = o.seed ? seeded_uniform(*o.seed, rows[i]->seq->index,
                                   static_cast<int32_t>(rows[i]->seq->output.size()))
                  : uniform(rng_);
  }
  at::Tensor probs;
  if (any_random) {
    at::Tensor t = at::from_blob(temperature.data(), {N, 1}, at::kFloat);
    probs = at::softmax(valid / t, 1).contiguous();
  }
  const float* lse_p = lse.data_ptr<float>();
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* row = base + i * stride;
      const SamplingOptions& o = *rows[i]->sampling;
      const LogSoftmax ls{lse_p[i]};
      SeqStepResult& r = *results[i];
      r.token = o.greedy() ? argmax(row, V)
                           : sample_from_probs(probs.data_ptr<float>() + i * V, V, o, u[i]);
      const float x = row[r.token];
      r.logprob = ls.logprob(x);
      if (o.greedy()) {
        r.rank = 1;  // the first maximum: nothing ranks above it
      } else {
        int32_t above = 0;
        for (int64_t t = 0; t < V; ++t) above += row[t] > x;
        r.rank = 1 + above;
      }
      const int k =
          std::max(o.logprobs, o.use_beam_search ? o.beam_candidates(eos_token_ids_.size()) : 0);
      if (k > 0) r.top = top_logprobs(row, V, k, ls);
    }
  });
}

std::vector<std::vector<TokenLogprob>> Sampler::prompt_logprobs(const at::Tensor& logits,
                                                                const std::vector<int32_t>& targets,
                                                                int k) {
  TORCH_CHECK(logits.scalar_type() == at::kFloat && logits.is_contiguous() && logits.dim() == 2);
  const int64_t P = logits.size(0), V = logits.size(1);
  TORCH_CHECK(static_cast<size_t>(P) == targets.size());
  std::vector<std::vector<TokenLogprob>> out(P);
  const float* base = logits.data_ptr<float>();
  const at::Tensor lse = at::logsumexp(logits, 1).contiguous();
  const float* lse_p = lse.data_ptr<float>();
  at::parallel_for(0, P, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* row = base + i * V;
      const LogSoftmax ls{lse_p[i]};
      const int32_t t = targets[i];
      out[i].push_back({t, (t >= 0 && t < V) ? ls.logprob(row[t]) : -INFINITY});
      if (k > 0) {
        std::vector<TokenLogprob> top = top_logprobs(row, V, k, ls);
        out[i].insert(out[i].end(), top.begin(), top.end());
      }
    }
  });
  return out;
}

}  // namespace taco
