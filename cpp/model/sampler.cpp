#include "model/sampler.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/mix64.h"
#include "core/sampling_options.h"
#include "core/sequence.h"
#include "cpu/sampling.h"
#include "model/logits_processors.h"
#include "ops/sampling.h"

namespace taco {

using namespace cpu::sampling;  // NOLINT(google-build-using-namespace): the row arithmetic

Sampler::Sampler(int32_t vocab_size, std::vector<int32_t> eos_token_ids, uint64_t seed)
    : vocab_size_(vocab_size), eos_token_ids_(std::move(eos_token_ids)), seed_(seed), rng_(seed) {}

GuideMasks Sampler::guide(const std::vector<const ScheduledSeq*>& rows) const {
  GuideMasks g;
  std::vector<GuideRow> calls;
  for (size_t i = 0; i < rows.size(); ++i) {
    const SamplingOptions& o = *rows[i]->sampling;
    if (o.guide_key < 0) continue;
    g.rows.push_back(static_cast<int32_t>(i));
    calls.push_back({o.guide_key, rows[i]->seq->index, &rows[i]->seq->output});
  }
  if (g.empty() || !guide_hook_) return {};
  g.words = (vocab_size_ + 31) / 32;
  // Every id allowed until the hook says otherwise: a failed call masks nothing.
  g.bits.assign(g.rows.size() * static_cast<size_t>(g.words), -1);
  guide_hook_(
      {calls.data(), static_cast<int32_t>(calls.size()), g.bits.data(), g.words, vocab_size_});
  return g;
}

void Sampler::apply_guides_on_device(at::Tensor& logits, const GuideMasks& guides) const {
  if (guides.empty()) return;
  ops::apply_token_bitmask(logits, std::min<int64_t>(logits.size(1), vocab_size_), guides.rows,
                           guides.bits, guides.words);
}

void Sampler::sample(at::Tensor& logits, const std::vector<const ScheduledSeq*>& rows,
                     const std::vector<SeqStepResult*>& results, const GuideMasks& guides) {
  TORCH_CHECK(logits.scalar_type() == at::kFloat && logits.is_contiguous() && logits.dim() == 2,
              "sampler needs contiguous float32 logits [N, V]");
  const int64_t N = logits.size(0);
  const int64_t V = std::min<int64_t>(logits.size(1), vocab_size_);
  const int64_t stride = logits.size(1);
  TORCH_CHECK(static_cast<size_t>(N) == rows.size() && rows.size() == results.size());
  float* base = logits.data_ptr<float>();
  std::vector<const int32_t*> mask(N, nullptr);
  for (size_t k = 0; k < guides.rows.size(); ++k) {
    mask[guides.rows[k]] = guides.bits.data() + k * guides.words;
  }
  // Raw modes report the model's own logits: keep a copy of the rows processing will change.
  std::vector<std::vector<float>> raw(N);
  if (!reports_processed(mode_)) {
    for (int64_t i = 0; i < N; ++i) {
      const SamplingOptions& o = *rows[i]->sampling;
      if (!o.use_beam_search && (mask[i] != nullptr || changes_logits(o, *rows[i]->seq))) {
        raw[i].assign(base + i * stride, base + i * stride + V);
      }
    }
  }
  for (int64_t i = 0; i < N && hook_; ++i) {
    const SamplingOptions& o = *rows[i]->sampling;
    if (o.logits_hook_key < 0) continue;
    const Sequence& q = *rows[i]->seq;
    hook_(
        {o.logits_hook_key, q.prompt.get(), &q.output, base + i * stride, static_cast<int32_t>(V)});
  }
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const SamplingOptions& o = *rows[i]->sampling;
      const Sequence& q = *rows[i]->seq;
      float* row = base + i * stride;
      // A grammar that accepts only EOS where min_tokens (or a stop id) forbids it would leave
      // nothing to sample: the grammar wins, and the row keeps only its mask.
      std::vector<float> guided;
      if (mask[i] != nullptr) {
        apply_token_bitmask(row, V, mask[i]);
        if (changes_logits(o, q)) guided.assign(row, row + V);
      }
      process_logits(row, static_cast<int32_t>(V), o, q, eos_token_ids_);
      if (!guided.empty() && all_masked(row, V)) std::copy(guided.begin(), guided.end(), row);
      if (o.use_beam_search && o.temperature > 0.0f && o.temperature != 1.0f) {
        const float inv = 1.0f / o.temperature;
        for (int64_t t = 0; t < V; ++t) row[t] *= inv;
      }
    }
  });
  at::Tensor valid = logits.narrow(1, 0, V);
  // Batched and vectorized: log-normalizers of the processed logits, and the temperature-scaled
  // probabilities of the rows that sample.
  const auto [lse, best_ids] = row_normalizers(valid);
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
  const int64_t* best_p = best_ids.data_ptr<int64_t>();
  const bool as_logits = reports_logits(mode_);
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* row = base + i * stride;
      const SamplingOptions& o = *rows[i]->sampling;
      SeqStepResult& r = *results[i];
      const bool want_rank = o.logprobs >= 0;
      if (o.use_beam_search) {  // beams are scored on processed (and scaled) logprobs
        r.token = static_cast<int32_t>(best_p[i]);
        const int k = std::max(o.logprobs, o.beam_candidates(eos_token_ids_.size()));
        report_plain(row, V, lse_p[i], false, k, r.token, false, r);
        continue;
      }
      const int k = std::max(o.logprobs, 0);
      if (o.greedy()) {
        r.token = static_cast<int32_t>(best_p[i]);
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

std::pair<at::Tensor, at::Tensor> Sampler::row_normalizers(const at::Tensor& logits) {
  // logsumexp's own arithmetic, max + log(sum(exp(x - max))), with x - max clamped at -80: ATen's
  // exp runs several times slower on -inf and huge negative inputs (masked ids), and exp(-80)
  // (1.8e-35 per id) is far below the float resolution of a sum that is at least 1. at::max
  // gives the first maximum, as argmax() does.
  auto [best, arg] = logits.max(1, /*keepdim=*/true);
  at::Tensor lse = best + (logits - best).clamp_min_(-80.0).exp_().sum(1, true).log_();
  // A row whose maximum is infinite (all -inf, or a +inf entry): that infinity, as logsumexp.
  lse = at::where(at::isinf(best), best, lse);
  return {lse.squeeze(1).contiguous(), arg.squeeze(1).contiguous()};
}

std::vector<double> Sampler::uniforms(const std::vector<const ScheduledSeq*>& rows) {
  std::vector<double> u(rows.size(), 0.0);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  for (size_t i = 0; i < rows.size(); ++i) {  // the engine generator's numbers in batch order
    const SamplingOptions& o = *rows[i]->sampling;
    if (o.greedy()) continue;
    const Sequence& q = *rows[i]->seq;
    const auto step = static_cast<int32_t>(q.output.size());
    if (o.seed) {
      u[i] = seeded_uniform(*o.seed, q.index, step);
    } else if (per_sequence_draws_) {
      u[i] = seeded_uniform(mix64(seed_ ^ mix64(static_cast<uint64_t>(q.id))), 0, step);
    } else {
      u[i] = uniform(rng_);
    }
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
        changes_logits(o, *row->seq) || (o.guide_key >= 0 && mode_ == LogprobsMode::kRawLogprobs)) {
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
