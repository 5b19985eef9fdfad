// Per-request generation options the C++ engine acts on. Python's SamplingParams validates user
// input and fills this struct; C++ embedders fill it directly (taco.h mirrors it).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace taco {

// Every per-request option: X(type, name, default, ok, rule), the one list from which the struct,
// its validation and the Python properties follow. `ok` is a predicate over the value `v` (and
// the struct `o`); `rule` says it in words for the error message.
#define TACO_SAMPLING_OPTIONS(X)                                                                \
  /* n sequences returned out of best_of generated; the n best by cumulative logprob. */        \
  X(int, n, 1, v >= 1, ">= 1")                                                                  \
  X(int, best_of, 1, v >= o.n, ">= n")                                                          \
  /* best_of > n: stream all best_of sequences and let the caller pick the n best (Python does, \
     so that stop strings end every sequence as it runs) instead of the n best at the end. */   \
  X(bool, stream_best_of, false, true, "a bool")                                                \
  /* Logits processing, in this order: the caller's hook, the guide's token bitmask, allowed    \
     ids / bias / bad words, penalties, temperature, then top-k, top-p, min-p filtering. */     \
  X(float, repetition_penalty, 1.0f, v > 0, "> 0 (HF style, over prompt and output)")           \
  X(float, presence_penalty, 0.0f, v >= -2 && v <= 2, "in [-2, 2] (over output tokens)")        \
  X(float, frequency_penalty, 0.0f, v >= -2 && v <= 2, "in [-2, 2] (over output tokens)")       \
  X(float, temperature, 1.0f, v >= 0, ">= 0 (0 selects greedy)")                                \
  X(float, top_p, 1.0f, v > 0 && v <= 1, "in (0, 1]")                                           \
  X(int, top_k, -1, true, "an integer (<= 0: disabled)")                                        \
  X(float, min_p, 0.0f, v >= 0 && v <= 1, "in [0, 1]")                                          \
  /* A per-request generator: the same tokens in any batch position. */                         \
  X(std::optional<uint64_t>, seed, std::nullopt, true, "an integer or none")                    \
  X(std::vector<int32_t>, allowed_token_ids, {}, true, "token ids (empty: all)")                \
  X(TokenBiases, logit_bias, {}, true, "(token id, bias) pairs")                                \
  X(TokenSequences, bad_words_token_ids, {}, true, "token id sequences, banned on a match")     \
  /* >= 0: EngineOptions::logits_hook edits this request's rows first. */                       \
  X(int64_t, logits_hook_key, -1, true, "an integer (< 0: none)")                               \
  /* >= 0: EngineOptions::guide_hook gives this request's rows a token bitmask every step (a    \
     grammar), applied after the hook and before everything else. */                            \
  X(int64_t, guide_key, -1, true, "an integer (< 0: none)")                                     \
  /* Adapters added to the engine (Engine::add_adapter), by id; 0: none. A prompt adapter's     \
     requests begin with its num_virtual_tokens placeholder ids (the model reads its embeddings \
     there instead). */                                                                         \
  X(int64_t, lora_id, 0, v >= 0, ">= 0 (0: the base model)")                                    \
  X(int64_t, prompt_adapter_id, 0, v >= 0, ">= 0 (0: none)")                                    \
  /* Stopping (stop strings live in Python: they need the detokenizer). max_tokens is already   \
     resolved: never above max_model_len - prompt length. */                                    \
  X(int, max_tokens, 16, v >= 1, ">= 1")                                                        \
  X(int, min_tokens, 0, v >= 0, ">= 0 (EOS and stop ids are suppressed before that many)")      \
  X(bool, ignore_eos, false, true, "a bool")                                                    \
  X(std::vector<int32_t>, stop_token_ids, {}, true, "token ids")                                \
  /* Log probabilities: -1 none, k >= 0 the sampled token plus the top k. */                    \
  X(int, logprobs, -1, v >= -1, ">= -1 (-1: none)")                                             \
  X(int, prompt_logprobs, -1, v >= -1, ">= -1 (-1: none)")                                      \
  /* Beam search (vLLM 0.6.0 use_beam_search): best_of is the beam width. A temperature > 0     \
     (LLM.beam_search's) scales the logits the beams are scored on; beams never sample. */      \
  X(bool, use_beam_search, false, true, "a bool")                                               \
  X(float, length_penalty, 1.0f, true, "a number")                                              \
  X(int, early_stopping, 0, v >= 0 && v <= 2, "0 (False), 1 (True) or 2 ('never')")

using TokenBiases = std::vector<std::pair<int32_t, float>>;  // token id, bias added to the logit
using TokenSequences = std::vector<std::vector<int32_t>>;

struct SamplingOptions {
#define TACO_OPTION_FIELD(type, name, value, ok, rule) type name = value;
  TACO_SAMPLING_OPTIONS(TACO_OPTION_FIELD)
#undef TACO_OPTION_FIELD

  bool greedy() const { return temperature == 0.0f || use_beam_search; }

  // Beam search keeps the best (1 + number of stop ids) * width continuations of all beams each
  // step (at least 2 * width), as HF does, so width of them survive even when the best ones stop.
  int beam_candidates(size_t num_eos_ids) const {
    const size_t stops = (ignore_eos ? 0 : num_eos_ids) + stop_token_ids.size();
    return static_cast<int>(std::max<size_t>(2, 1 + stops)) * best_of;
  }
};

// Throws std::invalid_argument naming the first option outside its rule (the list above).
void validate(const SamplingOptions& o);

}  // namespace taco
