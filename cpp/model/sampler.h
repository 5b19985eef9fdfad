// Batched sampling over float32 logits rows, one row per sequence that samples this step.
//
// Logprobs semantics (EngineOptions::logprobs_mode): by default, as vLLM 0.6, of the
// distribution the token was drawn from: after the logits processors (allowed ids, bias, bad
// words, min_tokens, penalties), temperature and top-k / top-p / min-p, filtered tokens -inf and
// not listed. Greedy rows skip temperature and filtering, so their logprobs are the processed
// logits' log-softmax. Raw modes report the model's logits before any processing. Beam search
// rows always report what the beams are scored on. Ranks are computed only when logprobs >= 0.
//
// Randomness: a request with a seed draws its uniform number from a counter-based hash of
// (seed, sequence index, output length), so it samples the same tokens wherever it sits in a
// batch and whatever else runs; unseeded requests draw from one engine generator seeded by
// EngineOptions::seed, in batch order. With speculative decoding the number of rows a step
// samples depends on the drafts (and their sizing on measured times), so unseeded requests draw
// from a hash of (engine seed, sequence id, output length) instead: runs stay reproducible.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "core/engine_options.h"
#include "core/executor.h"
#include "core/scheduler_output.h"

namespace taco {

// The token bitmasks a grammar puts on one step's guided rows (EngineOptions::guide_hook).
struct GuideMasks {
  std::vector<int32_t> rows;  // the sampled rows (indices into the step's rows) with a mask
  std::vector<int32_t> bits;  // [rows.size(), words]
  int32_t words = 0;
  bool empty() const { return rows.empty(); }
};

class Sampler {
 public:
  Sampler(int32_t vocab_size, std::vector<int32_t> eos_token_ids, uint64_t seed);

  // Caller's processors for rows whose request has a logits_hook_key (run first, serially).
  void set_logits_hook(LogitsHook hook) { hook_ = std::move(hook); }
  void set_logprobs_mode(LogprobsMode mode) { mode_ = mode; }
  // Fills the token bitmasks of rows whose request has a guide_key (one call per step).
  void set_guide_hook(GuideHook hook) { guide_hook_ = std::move(hook); }
  // Unseeded rows draw from a hash of (engine seed, sequence id, output length).
  void set_per_sequence_draws(bool on) { per_sequence_draws_ = on; }

  // The bitmasks of this step's guided rows, from one call of the guide hook (empty when none).
  // Every step that samples asks once, before any of the sampling calls below.
  GuideMasks guide(const std::vector<const ScheduledSeq*>& rows) const;

  // Applies the masks to logits [N, V] float32 (contiguous rows) on the device, before
  // sample_argmax or sample_on_device.
  void apply_guides_on_device(at::Tensor& logits, const GuideMasks& guides) const;

  // logits [N, V] float32 contiguous, row i for rows[i] (a ScheduledSeq with do_sample); edited
  // in place, guides' masks included. Fills token, logprob, rank and top of results[i].
  void sample(at::Tensor& logits, const std::vector<const ScheduledSeq*>& rows,
              const std::vector<SeqStepResult*>& results, const GuideMasks& guides = {});

  // True when every row is plain greedy that needs nothing but its token and that token's value
  // (no logprobs list or rank, no processors, no hook, no beams): the argmax and the value can
  // then come from the device without moving [N, V] logits to the host. Guided rows qualify
  // (their masks applied on the device first) unless raw logprobs are reported.
  bool argmax_suffices(const std::vector<const ScheduledSeq*>& rows) const;

  // For argmax_suffices rows: logits [N, V] float32 on any device; fills token and logprob
  // (or logit, in the logits modes) as sample() would, with rank 1.
  void sample_argmax(const at::Tensor& logits, const std::vector<SeqStepResult*>& results) const;

  // True when every row can sample on the device (CUDA builds): no beams, processors or hook,
  // the default logprobs mode, and at most ops::device_sample_top_max() logprobs. Guided rows
  // qualify, their masks applied on the device first.
  bool device_suffices(const std::vector<const ScheduledSeq*>& rows) const;

  // For device_suffices rows: logits [N, V] float32 on a CUDA device; fills results as sample()
  // would (same uniform numbers, same semantics; sums in a different order).
  void sample_on_device(const at::Tensor& logits, const std::vector<const ScheduledSeq*>& rows,
                        const std::vector<SeqStepResult*>& results);

  // logits [P, V] float32 where row i predicts targets[i]: per row the target's logprob first,
  // then the top k (k = prompt_logprobs), of the unprocessed model distribution.
  static std::vector<std::vector<TokenLogprob>> prompt_logprobs(const at::Tensor& logits,
                                                                const std::vector<int32_t>& targets,
                                                                int k);

  // Per row of logits [N, V] float32: log(sum(exp(row))) (float32 [N]) and the first maximum's
  // id (int64 [N]), both contiguous.
  static std::pair<at::Tensor, at::Tensor> row_normalizers(const at::Tensor& logits);

 private:
  // One uniform number per row that samples (0 for greedy rows): seeded rows from their own
  // counter-based hash, the others from the engine generator in batch order.
  std::vector<double> uniforms(const std::vector<const ScheduledSeq*>& rows);

  int32_t vocab_size_;
  std::vector<int32_t> eos_token_ids_;
  uint64_t seed_;
  bool per_sequence_draws_ = false;
  std::mt19937_64 rng_;
  LogitsHook hook_;
  GuideHook guide_hook_;
  LogprobsMode mode_ = LogprobsMode::kProcessedLogprobs;
};

}  // namespace taco
