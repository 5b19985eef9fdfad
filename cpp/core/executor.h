// The boundary between the ATen-free engine (cpp/core) and the model runner (cpp/model).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/scheduler_output.h"

namespace taco {

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

// Result for one ScheduledSeq, in the order of SchedulerOutput::seqs.
struct SeqStepResult {
  int64_t seq_id = 0;
  // When do_sample: the sampled token and its logprob (of the processed distribution
  // before temperature, as vLLM 0.6 reports).
  int32_t token = -1;
  float logprob = 0.0f;
  int32_t rank = 0;  // 1-based rank of the sampled token among the logprobs
  // Top candidates, descending by logprob (ties: lower id first): max(logprobs,
  // SamplingOptions::beam_candidates) of them when asked.
  std::vector<TokenLogprob> top;
  // When want_prompt_logprobs: one entry per prompt token predicted by this chunk's positions:
  // a chunk computing positions [a, b) yields prompt tokens a+1 .. min(b, prompt_len - 1), so the
  // chunks of one prompt together cover tokens 1 .. prompt_len-1 in order (token 0 has none).
  // Each entry holds the actual token first, then the top prompt_logprobs candidates.
  std::vector<std::vector<TokenLogprob>> prompt_logprobs;
  // Speculative decoding (ScheduledSeq::draft): the tokens sampled after `token` at the drafted
  // positions while each draft token equalled the token sampled before it. Their count is the
  // number of drafts accepted; `token` and then these are the step's output, in order.
  std::vector<SeqStepResult> next;
};

// Adapters requests name by id (SamplingOptions::lora_id / prompt_adapter_id): LoRA weights, or
// a prompt adapter's virtual tokens.
enum class AdapterKind : uint8_t { kLora, kPromptAdapter };

struct AdapterInfo {
  int64_t id = 0;
  std::string name;
  std::string path;
  int32_t rank = 0;                // LoRA: the largest module rank
  int32_t num_virtual_tokens = 0;  // prompt adapter: tokens its requests' prompts begin with
  // The engine's: new at every add, seeds the prefix-cache hashes of the adapter's requests (an
  // id removed and added again with other weights never meets its old KV).
  uint64_t salt = 0;
};

class Executor {
 public:
  virtual ~Executor() = default;
  // KV capacity the runner allocated, in blocks of block_size tokens.
  virtual int32_t num_device_blocks() const = 0;
  virtual int32_t num_cpu_blocks() const = 0;
  virtual int32_t block_size() const = 0;
  // Swaps and copies blocks as listed, then runs one forward over the scheduled batch and samples.
  virtual std::vector<SeqStepResult> execute(const SchedulerOutput& out) = 0;
  // Reads the adapter at `path` for requests naming `id` (the engine checks ids and names). Throws
  // std::invalid_argument naming the adapter and the problem; nothing changes then.
  virtual AdapterInfo load_adapter(AdapterKind kind, int64_t id, const std::string& path) {
    (void)kind, (void)id;
    throw std::invalid_argument("adapter " + path + ": this executor runs no adapters");
  }
  // Forgets an adapter no unfinished request names.
  virtual void unload_adapter(AdapterKind kind, int64_t id) { (void)kind, (void)id; }
};

}  // namespace taco
