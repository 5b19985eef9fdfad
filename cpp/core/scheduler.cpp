#include "core/scheduler.h"

#include <algorithm>

namespace taco {

// Budgets and partial results of the step being built.
struct Scheduler::Step {
  int32_t tokens = 0;            // batched tokens left
  int32_t reserved_decodes = 0;  // running decodes not yet visited: prefill chunks leave them room
  bool preempted = false;
  SchedulerOutput out;
  std::vector<ScheduledSeq> prefills;                 // appended after the decodes in out.seqs
  std::vector<std::pair<size_t, SeqState*>> drafted;  // decodes (index in out.seqs) with drafts
};

namespace {

void set_status(Request* r, SeqStatus status) {
  r->state = status;
  for (SeqState& s : r->seqs) {
    if (!s.seq->finished()) s.seq->status = status;
  }
}

template <typename Queue>
void erase_from(Queue& q, Request* r) {
  q.erase(std::remove(q.begin(), q.end(), r), q.end());
}

}  // namespace

Scheduler::Scheduler(const SchedulerConfig& cfg, BlockManager& blocks)
    : cfg_(cfg), blocks_(blocks) {}

void Scheduler::add(Request* r) {
  set_status(r, SeqStatus::kWaiting);
  waiting_.push_back(r);
}

void Scheduler::release(SeqState& s) { blocks_.free(s.blocks); }

void Scheduler::remove(Request* r) {
  erase_from(waiting_, r);
  erase_from(running_, r);
  erase_from(swapped_, r);
  for (SeqState& s : r->seqs) release(s);
}

int32_t Scheduler::running_demand() const {
  int32_t n = 0;
  for (const Request* r : running_) n += r->seq_demand();
  return n;
}

std::vector<BlockTable*> Scheduler::live_tables(Request* r) {
  std::vector<BlockTable*> tables;
  for (SeqState& s : r->seqs) {
    if (!s.seq->finished()) tables.push_back(&s.blocks);
  }
  return tables;
}

SchedulerOutput Scheduler::schedule() {
  Step step;
  step.tokens = cfg_.max_num_batched_tokens;
  for (Request* r : running_) {
    for (SeqState& s : r->seqs) {
      step.reserved_decodes += !s.seq->finished() && s.seq->len() - s.seq->num_computed == 1;
    }
  }
  // Oldest first; a preemption removes requests from the back, which are not visited yet.
  for (size_t i = 0; i < running_.size(); ++i) {
    if (schedule_request(running_[i], step, true) == Planned::kSelfPreempted) break;
  }
  while (!step.preempted && !swapped_.empty() && try_swap_in(swapped_.front(), step)) {
    swapped_.pop_front();
  }
  if (!step.preempted && running_.empty() && !swapped_.empty()) recompute_swapped_front();
  for (auto it = waiting_.begin(); !step.preempted && swapped_.empty() && it != waiting_.end();) {
    if (!adapters_fit(*it)) {
      ++it;
      continue;
    }
    if (!try_admit(*it, step)) break;
    it = waiting_.erase(it);
  }
  add_drafts(step);
  for (ScheduledSeq& s : step.prefills) step.out.seqs.push_back(std::move(s));
  step.out.num_batched_tokens = cfg_.max_num_batched_tokens - step.tokens;
  return std::move(step.out);
}

// Plans every unfinished sequence of r within the token budget, makes room for all of them at
// once (preempting newer requests when allowed) and emits them. All or nothing per request, so
// a preempted request never leaves half a plan behind.
Scheduler::Planned Scheduler::schedule_request(Request* r, Step& step, bool may_preempt) {
  struct Item {
    SeqState* s;
    int32_t num_new;
  };
  std::vector<Item> plan;
  int32_t tokens = step.tokens;
  int32_t needed_blocks = 0;
  for (SeqState& s : r->seqs) {
    const Sequence& q = *s.seq;
    const int32_t need = q.len() - q.num_computed;
    if (q.finished() || need <= 0) continue;
    int32_t avail = tokens;
    if (need == 1 && step.reserved_decodes > 0) {
      --step.reserved_decodes;
    } else if (cfg_.chunked_prefill) {
      // A chunk of any size makes progress, so it leaves room for the decodes behind it. A
      // whole prefill (no chunking) cannot shrink: it goes first rather than starve.
      avail = std::max(0, tokens - step.reserved_decodes);
    }
    int32_t num_new = cfg_.chunked_prefill ? std::min(need, avail) : (need <= avail ? need : 0);
    if (num_new <= 0) continue;
    tokens -= num_new;
    needed_blocks += blocks_.blocks_needed(s.blocks, q.num_computed, num_new);
    plan.push_back({&s, num_new});
  }
  if (plan.empty()) return Planned::kNone;
  while (!blocks_.can_allocate(needed_blocks)) {
    if (!may_preempt || running_.empty()) return Planned::kNone;
    Request* victim = running_.back();
    preempt(victim, step);
    if (victim == r) return Planned::kSelfPreempted;
  }
  for (const Item& it : plan) {
    Sequence& q = *it.s->seq;
    const int32_t num_new = it.num_new;
    ScheduledSeq ss;
    ss.seq_id = q.id;
    ss.seq = &q;
    ss.sampling = &r->opts;
    ss.num_computed = q.num_computed;
    ss.num_new = num_new;
    ss.do_sample = q.num_computed + it.num_new == q.len();
    ss.want_prompt_logprobs =
        q.index == 0 && r->wants_prompt_logprobs() && q.num_computed < q.prompt_len();
    blocks_.append_slots(it.s->blocks, q.num_computed, num_new, &step.out.copy, &ss.slot_mapping);
    ss.block_table = it.s->blocks.blocks;
    step.tokens -= num_new;
    const bool decode = q.len() - q.num_computed == 1;
    if (decode && !it.s->draft.empty()) step.drafted.emplace_back(step.out.seqs.size(), it.s);
    (decode ? step.out.seqs : step.prefills).push_back(std::move(ss));
  }
  return Planned::kSome;
}

// Speculative drafts take what the step leaves: tokens and free blocks no decode, prefill chunk
// or admission wanted. They never delay a prompt or preempt anyone.
void Scheduler::add_drafts(Step& step) {
  for (auto& [index, s] : step.drafted) {
    ScheduledSeq& ss = step.out.seqs[index];
    const int32_t start = ss.num_computed + ss.num_new;
    const int32_t n = std::min(static_cast<int32_t>(s->draft.size()), step.tokens);
    if (n <= 0 || !blocks_.can_allocate(blocks_.blocks_needed(s->blocks, start, n))) continue;
    // The decode made the block at `start` private already: no copy-on-write here.
    blocks_.append_slots(s->blocks, start, n, &step.out.copy, &ss.slot_mapping);
    ss.block_table = s->blocks.blocks;
    ss.draft.assign(s->draft.begin(), s->draft.begin() + n);
    ss.num_new += n;
    step.tokens -= n;
  }
}

void Scheduler::preempt(Request* victim, Step& step) {
  erase_from(running_, victim);
  step.preempted = true;
  ++stats_.num_preemptions;
  std::vector<BlockTable*> tables = live_tables(victim);
  // Recomputing a forked request loses its block sharing, so swap it whenever CPU room allows.
  const bool want_swap = cfg_.preemption_mode == PreemptionMode::kSwap || victim->seq_demand() > 1;
  if (want_swap && blocks_.can_swap_out(tables)) {
    blocks_.swap_out(tables, &step.out.swap_out);
    ++stats_.num_swapped_out;
    set_status(victim, SeqStatus::kSwapped);
    swapped_.push_front(victim);
    return;
  }
  requeue_for_recompute(victim);
}

// Frees every block of r and puts it at the front of the waiting queue; its outputs stay and
// are recomputed as part of the prompt.
void Scheduler::requeue_for_recompute(Request* r) {
  for (SeqState& s : r->seqs) {
    if (s.seq->finished()) continue;
    blocks_.free(s.blocks);
    s.seq->num_computed = 0;
  }
  if (r->wants_prompt_logprobs()) r->prompt_logprobs.clear();
  set_status(r, SeqStatus::kWaiting);
  waiting_.push_front(r);
}

namespace {

// Whether one more request naming adapter `id` keeps the running ones within `limit` distinct
// adapters (of the kind `id_of` reads).
template <typename IdOf>
bool fits_slots(const std::vector<Request*>& running, int64_t id, int32_t limit, IdOf id_of) {
  if (id == 0 || limit <= 0) return true;
  std::vector<int64_t> seen;
  for (const Request* q : running) {
    const int64_t other = id_of(q);
    if (other == id) return true;
    if (other != 0 && std::find(seen.begin(), seen.end(), other) == seen.end()) {
      seen.push_back(other);
    }
  }
  return static_cast<int32_t>(seen.size()) < limit;
}

}  // namespace

bool Scheduler::adapters_fit(const Request* r) const {
  return fits_slots(running_, r->opts.lora_id, cfg_.max_loras,
                    [](const Request* q) { return q->opts.lora_id; }) &&
         fits_slots(running_, r->opts.prompt_adapter_id, cfg_.max_prompt_adapters,
                    [](const Request* q) { return q->opts.prompt_adapter_id; });
}

bool Scheduler::try_swap_in(Request* r, Step& step) {
  if (running_demand() + r->seq_demand() > cfg_.max_num_seqs || !adapters_fit(r)) return false;
  std::vector<BlockTable*> tables = live_tables(r);
  // Room for the blocks coming back plus one new block per sequence, so it can make progress.
  const int32_t need = blocks_.distinct_blocks(tables) + static_cast<int32_t>(tables.size());
  if (!blocks_.can_allocate(need)) return false;
  blocks_.swap_in(tables, &step.out.swap_in);
  for (SeqState& s : r->seqs) {
    if (!s.seq->finished()) blocks_.publish_full_blocks(*s.seq, s.blocks);
  }
  set_status(r, SeqStatus::kRunning);
  running_.push_back(r);
  schedule_request(r, step, false);
  return true;
}

// With nothing running, a swapped request that still cannot come back never will: drop its CPU
// copy and recompute it instead.
void Scheduler::recompute_swapped_front() {
  Request* r = swapped_.front();
  swapped_.pop_front();
  requeue_for_recompute(r);
}

bool Scheduler::try_admit(Request* r, Step& step) {
  if (step.tokens <= 0 || running_demand() + r->seq_demand() > cfg_.max_num_seqs) return false;
  int32_t queried = 0;
  int32_t hits = 0;
  for (SeqState& s : r->seqs) {
    if (s.seq->finished()) continue;
    // Prompt logprobs need logits at every prompt position: no cache reads for those.
    const int32_t cached =
        r->wants_prompt_logprobs() ? 0 : blocks_.attach_cached_prefix(*s.seq, s.blocks);
    s.seq->num_computed = cached;
    queried += s.seq->len();
    hits += cached;
  }
  if (schedule_request(r, step, false) == Planned::kNone) {
    for (SeqState& s : r->seqs) {
      if (s.seq->finished()) continue;
      blocks_.free(s.blocks);
      s.seq->num_computed = 0;
    }
    return false;
  }
  // As vLLM: lookups count only when there is a cache to look in.
  if (blocks_.prefix_caching()) stats_.prefix_cache_queries += queried;
  stats_.prefix_cache_hits += hits;
  if (!r->cache_reported) {
    r->cache_reported = true;
    r->num_cached_tokens = hits;  // only sequence 0 exists before the first admission
  }
  set_status(r, SeqStatus::kRunning);
  running_.push_back(r);
  return true;
}

}  // namespace taco
