// Continuous batching: each step picks running sequences first (decodes, then prefill chunks),
// swaps groups back in, then admits waiting requests in arrival order, all within the
// max_num_seqs and max_num_batched_tokens budgets. On block shortage it preempts the most
// recently admitted running request: swap to CPU, or free and recompute later.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "core/block_manager.h"
#include "core/engine_options.h"
#include "core/request.h"
#include "core/scheduler_output.h"

namespace taco {

struct SchedulerConfig {
  int32_t max_num_seqs = 256;
  int32_t max_num_batched_tokens = 2048;
  bool chunked_prefill = false;
  PreemptionMode preemption_mode = PreemptionMode::kRecompute;
  // Distinct adapters among running requests (> 0: the executor's slots), 0: no limit. A
  // waiting request whose adapter would exceed them waits while later ones are admitted.
  int32_t max_loras = 0;
  int32_t max_prompt_adapters = 0;
};

struct SchedulerStats {
  int64_t num_preemptions = 0;
  int64_t num_swapped_out = 0;       // requests moved to CPU
  int64_t prefix_cache_queries = 0;  // tokens looked up at admission
  int64_t prefix_cache_hits = 0;     // tokens found
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& cfg, BlockManager& blocks);

  void add(Request* r);  // to the back of the waiting queue
  // Drops r from whichever queue holds it and frees every block of its sequences.
  void remove(Request* r);
  // Frees the blocks of one finished sequence of a live request.
  void release(SeqState& s);
  SchedulerOutput schedule();

  int32_t num_waiting() const { return static_cast<int32_t>(waiting_.size()); }
  int32_t num_running() const { return static_cast<int32_t>(running_.size()); }
  int32_t num_swapped() const { return static_cast<int32_t>(swapped_.size()); }
  const SchedulerStats& stats() const { return stats_; }

 private:
  struct Step;
  enum class Planned { kNone, kSome, kSelfPreempted };

  Planned schedule_request(Request* r, Step& step, bool may_preempt);
  void preempt(Request* victim, Step& step);
  bool try_swap_in(Request* r, Step& step);
  bool try_admit(Request* r, Step& step);
  void add_drafts(Step& step);
  bool adapters_fit(const Request* r) const;
  void recompute_swapped_front();
  void requeue_for_recompute(Request* r);
  int32_t running_demand() const;
  std::vector<BlockTable*> live_tables(Request* r);

  SchedulerConfig cfg_;
  BlockManager& blocks_;
  std::deque<Request*> waiting_;
  std::vector<Request*> running_;  // admission order: back = most recently admitted
  std::deque<Request*> swapped_;
  SchedulerStats stats_;
};

}  // namespace taco
