// The engine loop: scheduler + block manager + an Executor. No ATen.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/engine_options.h"
#include "core/executor.h"
#include "core/sampling_options.h"
#include "core/sequence.h"

namespace taco {

// New results of one sequence since the previous step.
struct SeqDelta {
  int32_t index = 0;
  std::vector<int32_t> new_token_ids;
  std::vector<float> new_logprobs;                 // logprob of each new token
  std::vector<std::vector<TokenLogprob>> new_top;  // when logprobs >= 0: top-k per new token
  std::vector<int32_t> new_ranks;  // when logprobs >= 0: each new token's 1-based vocab rank
  double cumulative_logprob = 0;
  FinishReason finish = FinishReason::kNone;
  int32_t stop_token = -1;
  // Beam search rewrites whole sequences: when set, token_ids replace everything sent before.
  bool replace = false;
};

struct RequestDelta {
  std::string request_id;
  std::vector<SeqDelta> seqs;
  bool finished = false;
  int32_t num_cached_tokens = 0;  // prefix-cache hit, block aligned
  // Sent once, when the prompt is fully computed and prompt_logprobs >= 0.
  std::vector<std::vector<TokenLogprob>> prompt_logprobs;
  double first_token_time = 0;  // seconds (steady clock) when the first output token arrived
};

// The engine's counters (since creation) and gauges (now): X(type, name, meaning), the one list
// from which the struct and the bindings' views of it follow.
#define TACO_ENGINE_METRICS(X)                                                    \
  X(int64_t, num_preemptions, "sequences preempted (recompute or swap)")          \
  X(int64_t, prefix_cache_queries, "prompt tokens looked up in the prefix cache") \
  X(int64_t, prefix_cache_hits, "prompt tokens found in the prefix cache")        \
  X(int64_t, num_swapped_out, "sequences swapped out to CPU memory")              \
  X(int32_t, num_running, "requests running now")                                 \
  X(int32_t, num_waiting, "requests waiting now")                                 \
  X(int32_t, num_swapped, "requests swapped out now")                             \
  X(int32_t, kv_blocks_used, "KV cache blocks in use now")                        \
  X(int32_t, kv_blocks_total, "KV cache blocks in all")                           \
  X(int32_t, cpu_blocks_used, "swap-space blocks holding swapped-out sequences")  \
  X(int64_t, num_steps, "engine steps run")                                       \
  X(int64_t, num_generated_tokens, "output tokens generated")                     \
  X(int64_t, num_prompt_tokens_computed, "prompt tokens computed (not cached)")   \
  X(int64_t, spec_decode_num_drafts, "drafts verified (speculative decoding)")    \
  X(int64_t, spec_decode_num_draft_tokens, "tokens drafted and verified")         \
  X(int64_t, spec_decode_num_accepted_tokens, "drafted tokens accepted")          \
  X(int64_t, spec_decode_num_emitted_tokens, "tokens verification steps emitted")

struct EngineMetrics {
#define TACO_METRIC_FIELD(type, name, meaning) type name = 0;
  TACO_ENGINE_METRICS(TACO_METRIC_FIELD)
#undef TACO_METRIC_FIELD
};

// The KV cache cannot hold one max_model_len sequence.
struct CapacityError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Engine {
 public:
  // vocab_size bounds token ids; eos_token_ids end a sequence unless ignore_eos.
  Engine(const EngineOptions& opts, std::unique_ptr<Executor> executor, int32_t vocab_size,
         std::vector<int32_t> eos_token_ids, int32_t max_model_len);
  ~Engine();

  // Throws std::invalid_argument naming the problem (empty or too long prompt, token id out of
  // range, a request that can never fit the KV cache, duplicate id). Nothing is queued then.
  void add_request(const std::string& request_id, std::vector<int32_t> prompt,
                   const SamplingOptions& opts);
  // Adapters (enable_lora / enable_prompt_adapter): reads the one at `path` for requests naming
  // `id` (> 0). Adding an id again with the same path returns what it holds; a different path
  // under a known id throws std::invalid_argument, as does an adapter the executor cannot read
  // (the message names it). Nothing changes on a throw.
  AdapterInfo add_adapter(AdapterKind kind, int64_t id, const std::string& name,
                          const std::string& path);
  // Forgets an adapter: false when unknown; throws std::invalid_argument while an unfinished
  // request names it.
  bool remove_adapter(AdapterKind kind, int64_t id);
  std::vector<AdapterInfo> list_adapters(AdapterKind kind) const;

  // Frees a request in any state; false when unknown or finished.
  bool abort(const std::string& request_id);
  // Ends one sequence of a request as stopped (Python found a stop string).
  void finish_sequence(const std::string& request_id, int32_t index, FinishReason reason);

  // One step: schedule, execute, append tokens, check stops. Returns what changed.
  std::vector<RequestDelta> step();
  bool has_unfinished() const;
  int32_t num_unfinished() const;
  EngineMetrics metrics() const;

  const EngineOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace taco
