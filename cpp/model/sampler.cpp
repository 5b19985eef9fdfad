#include "model/sampler.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/sampling_options.h"
#include "core/sequence.h"
#include "model/logits_processors.h"
#include "ops/sampling.h"

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

// The k ids of highest score among ids (all of [0, V) when ids is null), descending, ties by
// lower id.
std::vector<int32_t> top_ids(const float* score, int64_t V, const std::vector<int32_t>* ids,
                             int k) {
  std::vector<int32_t> order;
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

float row_logsumexp(const float* row, int64_t V) {
  const float mx = *std::max_element(row, row + V);
  if (mx == -INFINITY) return mx;
  double sum = 0;
  for (int64_t t = 0; t < V; ++t) sum += std::exp(static_cast<double>(row[t] - mx));
  return mx + static_cast<float>(std::log(sum));
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

// The ids a row may sample after top-k, top-p and min-p (ascending) and their probability mass.
struct Kept {
  bool filtered = false;  // false: every id, ids empty
  std::vector<int32_t> ids;
  double total = 0;
  bool has(int32_t t) const {
    return !filtered || std::binary_search(ids.begin(), ids.end(), t);
  }
};

// prob: softmax(row / temperature).
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

// Inverse-CDF sampling with uniform u over the kept ids in id order, so the result depends only
// on the row and u.
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

// Token, value, rank and top list of a row reported from one plain score row `src` (processed
// logits of greedy rows, or raw logits): value = src[t] - lse, or src[t] for the logits modes.
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

// The same for a sampled row in a processed mode: the distribution the token was drawn from,
// softmax(row / T) renormalized over the kept ids; filtered ids are -inf and never listed.
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
  // Raw modes report the model's own logits: keep a copy of the rows processing will change.
  std::vector<std::vector<float>> raw(N);
  if (!reports_processed(mode_)) {
    for (int64_t i = 0; i < N; ++i) {
      const SamplingOptions& o = *rows[i]->sampling;
      if (!o.use_beam_search && changes_logits(o, *rows[i]->seq)) {
        raw[i].assign(base + i * stride, base + i * stride + V);
      }
    }
  }
  for (int64_t i = 0; i < N && hook_; ++i) {
    const SamplingOptions& o = *rows[i]->sampling;
    if (o.logits_hook_key < 0) continue;
    const Sequence& q = *rows[i]->seq;
    hook_({o.logits_hook_key, q.prompt.get(), &q.output, base + i * stride,
           static_cast<int32_t>(V)});
  }
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
  const std::vector<double> u = uniforms(rows);
  bool any_random = false;
  for (int64_t i = 0; i < N; ++i) {
    const SamplingOptions& o = *rows[i]->sampling;
    if (o.greedy()) continue;
    any_random = true;
    temperature[i] = o.temperature;
  }
  at::Tensor probs;
  if (any_random) {
    at::Tensor t = at::from_blob(temperature.data(), {N, 1}, at::kFloat);
    probs = at::softmax(valid / t, 1).contiguous();
  }
  const float* lse_p = lse.data_ptr<float>();
  const bool as_logits = reports_logits(mode_);
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* row = base + i * stride;
      const SamplingOptions& o = *rows[i]->sampling;
      SeqStepResult& r = *results[i];
      const bool want_rank = o.logprobs >= 0;
      if (o.use_beam_search) {  // beams are scored on processed (and scaled) logprobs
        r.token = argmax(row, V);
        const int k = std::max(o.logprobs, o.beam_candidates(eos_token_ids_.size()));
        report_plain(row, V, lse_p[i], false, k, r.token, false, r);
        continue;
      }
      const int k = std::max(o.logprobs, 0);
      if (o.greedy()) {
        r.token = argmax(row, V);
      } else {
        const float* prob = probs.data_ptr<float>() + i * V;
        const Kept kept = keep_ids(prob, V, o);
        r.token = draw(prob, V, kept, u[i]);
        if (reports_processed(mode_)) {
          report_processed(row, prob, V, kept, o.temperature, as_logits, k, r.token, want_rank, r);
          continue;
        }
      }
      if (!raw[i].empty()) {
        const float* src = raw[i].data();
        report_plain(src, V, row_logsumexp(src, V), as_logits, k, r.token, want_rank, r);
      } else {
        // A greedy row's token is the row's first maximum: nothing ranks above it.
        report_plain(row, V, lse_p[i], as_logits, k, r.token, want_rank && !o.greedy(), r);
        if (o.greedy()) r.rank = 1;
      }
    }
  });
}

std::vector<double> Sampler::uniforms(const std::vector<const ScheduledSeq*>& rows) {
  std::vector<double> u(rows.size(), 0.0);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  for (size_t i = 0; i < rows.size(); ++i) {  // the engine generator's numbers in batch order
    const SamplingOptions& o = *rows[i]->sampling;
    if (o.greedy()) continue;
    u[i] = o.seed ? seeded_uniform(*o.seed, rows[i]->seq->index,
                                   static_cast<int32_t>(rows[i]->seq->output.size()))
                  : uniform(rng_);
  }
  return u;
}

bool Sampler::device_suffices(const std::vector<const ScheduledSeq*>& rows) const {
  if (mode_ != LogprobsMode::kProcessedLogprobs || ops::device_sample_top_max() == 0) return false;
  for (const ScheduledSeq* row : rows) {
    const SamplingOptions& o = *row->sampling;
    if (o.use_beam_search || o.logits_hook_key >= 0 || o.logprobs > ops::device_sample_top_max() ||
        changes_logits(o, *row->seq)) {
      return false;
    }
  }
  return true;
}

void Sampler::sample_on_device(const at::Tensor& logits,
                               const std::vector<const ScheduledSeq*>& rows,
                               const std::vector<SeqStepResult*>& results) {
  const std::vector<double> u = uniforms(rows);
  std::vector<ops::RowSampling> settings(rows.size());
  int num_top = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const SamplingOptions& o = *rows[i]->sampling;
    num_top = std::max(num_top, o.logprobs);
    if (o.greedy()) continue;  // temperature 0
    settings[i] = {o.temperature, o.top_k, o.top_p, o.min_p, u[i]};
  }
  const int64_t V = std::min<int64_t>(logits.size(1), vocab_size_);
  const ops::SampledRows s = ops::sample_rows(logits, V, settings, num_top);
  for (size_t i = 0; i < rows.size(); ++i) {
    const SamplingOptions& o = *rows[i]->sampling;
    SeqStepResult& r = *results[i];
    r.token = s.token[i];
    r.logprob = s.logprob[i];
    if (o.greedy()) {
      r.rank = 1;
    } else if (o.logprobs >= 0) {
      r.rank = s.rank[i];
    }
    for (int j = 0; j < o.logprobs; ++j) {
      const int32_t id = s.top_ids[i * num_top + j];
      if (id < 0) break;
      r.top.push_back({id, s.top_logprobs[i * num_top + j]});
    }
  }
}

bool Sampler::argmax_suffices(const std::vector<const ScheduledSeq*>& rows) const {
  for (const ScheduledSeq* row : rows) {
    const SamplingOptions& o = *row->sampling;
    if (!o.greedy() || o.use_beam_search || o.logprobs >= 0 || o.logits_hook_key >= 0 ||
        changes_logits(o, *row->seq)) {
      return false;
    }
  }
  return true;
}

void Sampler::sample_argmax(const at::Tensor& logits,
                            const std::vector<SeqStepResult*>& results) const {
  const at::Tensor valid = logits.narrow(1, 0, std::min<int64_t>(logits.size(1), vocab_size_));
  // at::max returns the first maximum, as argmax() does on the host.
  auto [best, ids] = at::max(valid, 1);
  at::Tensor value = reports_logits(mode_) ? best : best - at::logsumexp(valid, 1);
  const at::Tensor host = at::stack({ids.to(at::kFloat), value}).to(at::kCPU).contiguous();
  const int64_t N = valid.size(0);
  const float* id_p = host.data_ptr<float>();
  const float* value_p = id_p + N;
  for (int64_t i = 0; i < N; ++i) {
    results[i]->token = static_cast<int32_t>(id_p[i]);
    results[i]->logprob = value_p[i];
    results[i]->rank = 1;
  }
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
