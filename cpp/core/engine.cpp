#include "core/engine.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <stdexcept>

#include "core/beam_search.h"
#include "core/block_manager.h"
#include "core/mix64.h"
#include "core/request.h"
#include "core/request_delta.h"
#include "core/scheduler.h"
#include "core/speculator.h"
#include "core/stop_check.h"

namespace taco {

namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string str(int64_t v) { return std::to_string(v); }

}  // namespace

struct Engine::Impl {
  EngineOptions opts;
  std::unique_ptr<Executor> executor;
  int32_t vocab_size;
  std::vector<int32_t> eos_ids;
  int32_t max_model_len;
  std::unique_ptr<BlockManager> blocks;
  std::unique_ptr<Scheduler> scheduler;
  std::unique_ptr<Speculator> speculator;
  std::unordered_map<std::string, std::unique_ptr<Request>> requests;
  std::unordered_map<int64_t, Request*> owner;  // sequence id -> its request
  std::vector<Request*> changed;                // requests with something to report
  std::vector<Request*> beam_ready;             // beam requests given candidates this step
  int64_t next_seq_id = 0;
  int64_t next_arrival = 0;
  EngineMetrics counters;                      // the step and token counters; the rest is read live
  std::map<int64_t, AdapterInfo> adapters[2];  // by AdapterKind
  uint64_t adapters_added = 0;

  void validate(const std::string& id, const std::vector<int32_t>& prompt,
                const SamplingOptions& so) const;
  SeqState new_seq(Request* r, int32_t index);
  void mark_changed(Request* r);
  void propose_drafts();
  void apply(const ScheduledSeq& ss, SeqStepResult& res);
  bool append_token(Request* r, int32_t index, SeqStepResult& res, bool end_now = true);
  void fork(Request* r);
  void beam_step(Request* r);
  SeqState beam_child(Request* r, const SeqState& parent, const BeamCandidate& c, int32_t index);
  void end_sequence(Request* r, int32_t index);
  std::vector<RequestDelta> collect_deltas();
};

Engine::Engine(const EngineOptions& opts, std::unique_ptr<Executor> executor, int32_t vocab_size,
               std::vector<int32_t> eos_token_ids, int32_t max_model_len)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  if (!executor) throw std::invalid_argument("Engine: executor is null");
  validate(opts);
  if (executor->block_size() != opts.block_size) {
    throw std::invalid_argument("executor block_size " + str(executor->block_size()) +
                                " differs from block_size " + str(opts.block_size));
  }
  if (max_model_len <= 0) throw std::invalid_argument("max_model_len must be positive");
  if (vocab_size <= 0) throw std::invalid_argument("vocab_size must be positive");
  const int64_t capacity = int64_t{executor->num_device_blocks()} * opts.block_size;
  if (capacity < max_model_len) {
    throw CapacityError("the KV cache holds " + str(executor->num_device_blocks()) + " blocks of " +
                        str(opts.block_size) + " tokens (" + str(capacity) +
                        " tokens), fewer than max_model_len " + str(max_model_len) +
                        "; give the cache more memory or lower max_model_len");
  }
  SchedulerConfig cfg;
  cfg.max_num_seqs = opts.max_num_seqs;
  cfg.max_loras = opts.enable_lora ? opts.max_loras : 0;
  cfg.max_prompt_adapters = opts.enable_prompt_adapter ? opts.max_prompt_adapters : 0;
  cfg.max_num_batched_tokens = opts.max_num_batched_tokens > 0
                                   ? opts.max_num_batched_tokens
                                   : std::max<int32_t>(max_model_len, 2048);
  cfg.chunked_prefill = opts.enable_chunked_prefill;
  cfg.preemption_mode = opts.preemption_mode;
  if (!cfg.chunked_prefill && cfg.max_num_batched_tokens < max_model_len) {
    throw std::invalid_argument("max_num_batched_tokens " + str(cfg.max_num_batched_tokens) +
                                " is smaller than max_model_len " + str(max_model_len) +
                                " without enable_chunked_prefill: long prompts could never run");
  }
  m.opts = opts;
  m.opts.max_num_batched_tokens = cfg.max_num_batched_tokens;
  m.vocab_size = vocab_size;
  m.eos_ids = std::move(eos_token_ids);
  m.max_model_len = max_model_len;
  m.blocks =
      std::make_unique<BlockManager>(executor->num_device_blocks(), executor->num_cpu_blocks(),
                                     opts.block_size, opts.enable_prefix_caching);
  m.scheduler = std::make_unique<Scheduler>(cfg, *m.blocks);
  m.speculator = std::make_unique<Speculator>(opts);
  m.executor = std::move(executor);
}

Engine::~Engine() = default;

const EngineOptions& Engine::options() const { return impl_->opts; }

void Engine::Impl::validate(const std::string& id, const std::vector<int32_t>& prompt,
                            const SamplingOptions& so) const {
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument("request '" + id + "': " + what);
  };
  if (requests.count(id)) fail("request id is already in use");
  if (prompt.empty()) fail("Prompt cannot be empty");
  const int64_t len = static_cast<int64_t>(prompt.size());
  if (len > max_model_len) {
    fail("prompt has " + str(len) + " tokens, more than max_model_len " + str(max_model_len));
  }
  for (size_t i = 0; i < prompt.size(); ++i) {
    if (prompt[i] < 0 || prompt[i] >= vocab_size) {
      fail("Token id " + str(prompt[i]) + " at position " + str(i) +
           " is out of vocabulary (ids are in [0, " + str(vocab_size) + "))");
    }
  }
  if (so.logits_hook_key >= 0 && !opts.logits_hook) {
    fail("logits_hook_key is set but the engine has no logits_hook");
  }
  if (so.guide_key >= 0 && !opts.guide_hook) {
    fail("guide_key is set but the engine has no guide_hook");
  }
  try {
    taco::validate(so);
  } catch (const std::invalid_argument& e) {
    fail(e.what());
  }
  if (so.lora_id != 0 && !adapters[0].count(so.lora_id)) {
    fail(opts.enable_lora ? "lora_id " + str(so.lora_id) + " names no added LoRA adapter"
                          : "a LoRA adapter needs an engine with enable_lora");
  }
  if (so.prompt_adapter_id != 0) {
    auto it = adapters[1].find(so.prompt_adapter_id);
    if (it == adapters[1].end()) {
      fail(opts.enable_prompt_adapter
               ? "prompt_adapter_id " + str(so.prompt_adapter_id) + " names no added prompt adapter"
               : "a prompt adapter needs an engine with enable_prompt_adapter");
    }
    if (len <= it->second.num_virtual_tokens) {
      fail("a prompt for prompt adapter " + str(so.prompt_adapter_id) + " begins with its " +
           str(it->second.num_virtual_tokens) + " virtual tokens and has at least one more");
    }
  }
  if (so.best_of > opts.max_num_seqs) {
    fail("best_of " + str(so.best_of) + " exceeds max_num_seqs " + str(opts.max_num_seqs));
  }
  // Worst case: every sequence holds its own blocks (after a recompute) plus one copy-on-write.
  const int64_t bs = opts.block_size;
  const int64_t slots = std::min<int64_t>(len + so.max_tokens - 1, max_model_len);
  const int64_t per_seq = (std::max(slots, len) + bs - 1) / bs;
  const int64_t need = so.best_of == 1 ? per_seq : so.best_of * (per_seq + 1);
  const int64_t have = blocks->device().num_blocks();
  if (need > have) {
    fail("needs up to " + str(need) + " KV blocks for " + str(so.best_of) + " sequence(s) of " +
         str(std::max(slots, len)) + " tokens, more than the " + str(have) + " the cache holds");
  }
}

SeqState Engine::Impl::new_seq(Request* r, int32_t index) {
  SeqState s;
  s.seq = std::make_unique<Sequence>();
  s.seq->id = next_seq_id++;
  s.seq->index = index;
  s.seq->prompt = r->prompt;
  // add_request checked that the ids are added; every add has its own salt.
  if (r->opts.lora_id != 0) s.seq->cache_salt ^= adapters[0].at(r->opts.lora_id).salt;
  if (r->opts.prompt_adapter_id != 0) {
    s.seq->cache_salt ^= adapters[1].at(r->opts.prompt_adapter_id).salt;
  }
  owner.emplace(s.seq->id, r);
  return s;
}

void Engine::add_request(const std::string& request_id, std::vector<int32_t> prompt,
                         const SamplingOptions& opts) {
  Impl& m = *impl_;
  m.validate(request_id, prompt, opts);
  auto r = std::make_unique<Request>();
  r->id = request_id;
  r->opts = opts;
  r->prompt = std::make_shared<const std::vector<int32_t>>(std::move(prompt));
  r->arrival = m.next_arrival++;
  r->prompt_logprobs_done = opts.prompt_logprobs < 0;
  r->seqs.push_back(m.new_seq(r.get(), 0));
  m.scheduler->add(r.get());
  m.requests.emplace(request_id, std::move(r));
}

AdapterInfo Engine::add_adapter(AdapterKind kind, int64_t id, const std::string& name,
                                const std::string& path) {
  Impl& m = *impl_;
  const bool lora = kind == AdapterKind::kLora;
  const std::string what = lora ? "LoRA adapter" : "prompt adapter";
  if (lora ? !m.opts.enable_lora : !m.opts.enable_prompt_adapter) {
    throw std::invalid_argument(what + " '" + name + "': the engine was made without " +
                                (lora ? "enable_lora" : "enable_prompt_adapter"));
  }
  if (id <= 0) {
    throw std::invalid_argument(what + " '" + name + "': id must be > 0, got " + str(id));
  }
  std::map<int64_t, AdapterInfo>& known = m.adapters[lora ? 0 : 1];
  auto it = known.find(id);
  if (it != known.end()) {
    if (it->second.path == path) return it->second;
    throw std::invalid_argument(what + " id " + str(id) + " already holds '" + it->second.name +
                                "' from " + it->second.path + "; '" + name + "' from " + path +
                                " needs an id of its own");
  }
  AdapterInfo info = m.executor->load_adapter(kind, id, path);
  info.id = id;
  info.name = name;
  info.path = path;
  info.salt = mix64(++m.adapters_added);
  known.emplace(id, info);
  return info;
}

bool Engine::remove_adapter(AdapterKind kind, int64_t id) {
  Impl& m = *impl_;
  std::map<int64_t, AdapterInfo>& known = m.adapters[kind == AdapterKind::kLora ? 0 : 1];
  if (!known.count(id)) return false;
  int32_t users = 0;
  for (const auto& [rid, r] : m.requests) {
    const int64_t named = kind == AdapterKind::kLora ? r->opts.lora_id : r->opts.prompt_adapter_id;
    users += r->state != SeqStatus::kFinished && named == id;
  }
  if (users > 0) {
    throw std::invalid_argument("adapter " + str(id) + " is in use by " + str(users) +
                                " unfinished request(s)");
  }
  m.executor->unload_adapter(kind, id);
  known.erase(id);
  return true;
}

std::vector<AdapterInfo> Engine::list_adapters(AdapterKind kind) const {
  std::vector<AdapterInfo> out;
  for (const auto& [id, info] : impl_->adapters[kind == AdapterKind::kLora ? 0 : 1]) {
    out.push_back(info);
  }
  return out;
}

bool Engine::abort(const std::string& request_id) {
  Impl& m = *impl_;
  auto it = m.requests.find(request_id);
  if (it == m.requests.end() || it->second->state == SeqStatus::kFinished) return false;
  Request* r = it->second.get();
  m.scheduler->remove(r);
  for (const SeqState& s : r->seqs) m.owner.erase(s.seq->id);
  m.changed.erase(std::remove(m.changed.begin(), m.changed.end(), r), m.changed.end());
  m.requests.erase(it);
  return true;
}

void Engine::finish_sequence(const std::string& request_id, int32_t index, FinishReason reason) {
  Impl& m = *impl_;
  auto it = m.requests.find(request_id);
  if (it == m.requests.end()) return;
  Request* r = it->second.get();
  if (index < 0 || index >= static_cast<int32_t>(r->seqs.size())) return;
  Sequence& q = *r->seqs[index].seq;
  if (q.finished()) return;
  q.finish = reason;
  q.status = SeqStatus::kFinished;
  m.end_sequence(r, index);
}

void Engine::Impl::mark_changed(Request* r) {
  if (r->changed) return;
  r->changed = true;
  changed.push_back(r);
}

// A sequence just finished: release its blocks, and the request's place when it was the last.
void Engine::Impl::end_sequence(Request* r, int32_t index) {
  speculator->observe(*r->seqs[index].seq, r->seqs[index].spec);
  scheduler->release(r->seqs[index]);
  mark_changed(r);
  if (r->all_finished()) {
    scheduler->remove(r);
    r->state = SeqStatus::kFinished;
  }
}

// The other best_of - 1 sequences start from the computed prompt minus its last token, which
// each computes itself to sample its own first token.
void Engine::Impl::fork(Request* r) {
  r->forked = true;
  const int32_t shared = r->seqs[0].seq->prompt_len() - 1;
  for (int32_t k = 1; k < r->opts.best_of; ++k) {
    SeqState child = new_seq(r, k);
    child.seq->status = SeqStatus::kRunning;
    child.seq->num_computed = shared;
    child.spec = speculator->fork_state(r->seqs[0].spec, r->seqs[0].seq->prompt_len());
    blocks->fork(r->seqs[0].blocks, shared, &child.blocks);
    r->seqs.push_back(std::move(child));
  }
}

// Returns whether the token stopped the sequence; with end_now false the caller ends it.
bool Engine::Impl::append_token(Request* r, int32_t index, SeqStepResult& res, bool end_now) {
  Sequence& q = *r->seqs[index].seq;
  SeqState& s = r->seqs[index];
  q.output.push_back(res.token);
  q.cumulative_logprob += res.logprob;
  s.logprobs.push_back(res.logprob);
  if (r->opts.logprobs >= 0) {
    // The executor may return more candidates (beam search); report the top `logprobs`.
    if (static_cast<int32_t>(res.top.size()) > r->opts.logprobs) res.top.resize(r->opts.logprobs);
    s.top.push_back(std::move(res.top));
    s.ranks.push_back(res.rank);
  }
  ++counters.num_generated_tokens;
  if (r->first_token_time == 0) r->first_token_time = now_seconds();
  mark_changed(r);
  const bool stopped = check_stop(q, r->opts, eos_ids, max_model_len);
  if (!r->forked && r->opts.best_of > 1) fork(r);
  if (stopped && end_now) end_sequence(r, index);
  return stopped;
}

// Drafts for the running sequences about to decode, unless the request's sampling depends on
// more than the model's logits and its own tokens (beams, grammars).
void Engine::Impl::propose_drafts() {
  if (!speculator->enabled()) return;
  const int32_t limit = opts.speculative_disable_by_batch_size;
  const int32_t unfinished = static_cast<int32_t>(requests.size());
  int32_t decodes = 0;  // sequences that decode next step (drafted or not)
  for (const auto& [id, r] : requests) {
    if (r->state != SeqStatus::kRunning) continue;
    for (const SeqState& s : r->seqs) {
      decodes += !s.seq->finished() && s.seq->len() - s.seq->num_computed == 1;
    }
  }
  for (auto& [id, r] : requests) {
    const bool eligible = r->state == SeqStatus::kRunning && !r->opts.use_beam_search &&
                          r->opts.guide_key < 0 && (r->forked || r->opts.best_of == 1) &&
                          (limit == 0 || unfinished <= limit);
    for (SeqState& s : r->seqs) {
      s.draft.clear();
      const Sequence& q = *s.seq;
      if (!eligible || q.finished() || q.len() - q.num_computed != 1) continue;
      speculator->observe(q, s.spec);
      // Drafts take the positions after the last token; the step emits one token more.
      const int32_t room = std::min(max_model_len - q.len(),
                                    r->opts.max_tokens - static_cast<int32_t>(q.output.size()) - 1);
      speculator->propose(q, s.spec, room, decodes, &s.draft);
    }
  }
}

void Engine::Impl::apply(const ScheduledSeq& ss, SeqStepResult& res) {
  Request* r = owner.at(ss.seq_id);
  const int32_t index = ss.seq->index;
  SeqState& s = r->seqs[index];
  Sequence& q = *s.seq;
  // Of a verified draft, the K/V of the accepted tokens stay; the rejected ones' slots go back.
  const auto drafted = static_cast<int32_t>(ss.draft.size());
  const int32_t accepted = drafted > 0 ? static_cast<int32_t>(res.next.size()) : 0;
  const int32_t computed = ss.num_new - drafted + accepted;
  const int32_t prompt_done = std::min(q.num_computed + computed, q.prompt_len());
  counters.num_prompt_tokens_computed += std::max(0, prompt_done - q.num_computed);
  q.num_computed += computed;
  if (drafted > 0) {
    blocks->truncate(s.blocks, q.num_computed);
  } else {
    blocks->publish_full_blocks(q, s.blocks);
  }
  if (ss.want_prompt_logprobs) {
    for (auto& entry : res.prompt_logprobs) r->prompt_logprobs.push_back(std::move(entry));
    if (q.num_computed >= q.prompt_len()) {
      r->prompt_logprobs_done = true;
      mark_changed(r);
    }
  }
  if (!ss.do_sample) return;
  if (drafted > 0) {
    ++counters.spec_decode_num_drafts;
    counters.spec_decode_num_draft_tokens += drafted;
    counters.spec_decode_num_accepted_tokens += accepted;
    speculator->record(s.spec, drafted, accepted);
    std::vector<SeqStepResult> more = std::move(res.next);
    int32_t emitted = 1;
    bool stopped = append_token(r, index, res, false);
    for (size_t j = 0; j < more.size() && !stopped; ++j, ++emitted) {
      stopped = append_token(r, index, more[j], false);
    }
    counters.spec_decode_num_emitted_tokens += emitted;
    // The accepted drafts are output tokens now: their full blocks can be published (a stop
    // inside the run leaves K/V past the last token, which is not the sequence's).
    q.num_computed = std::min(q.num_computed, q.len());
    blocks->publish_full_blocks(q, s.blocks);
    if (stopped) end_sequence(r, index);
    return;
  }
  if (!r->opts.use_beam_search) {
    append_token(r, index, res);
    return;
  }
  s.has_candidates = true;
  s.candidates = std::move(res.top);
  if (std::find(beam_ready.begin(), beam_ready.end(), r) == beam_ready.end()) {
    beam_ready.push_back(r);
  }
}

// A new live beam from candidate c of parent, sharing the parent's blocks copy-on-write.
SeqState Engine::Impl::beam_child(Request* r, const SeqState& parent, const BeamCandidate& c,
                                  int32_t index) {
  SeqState child = new_seq(r, index);
  child.seq->status = SeqStatus::kRunning;
  child.seq->num_computed = parent.seq->num_computed;
  beam_child_record(parent, c, r->opts.logprobs, child);
  blocks->fork(parent.blocks, parent.seq->num_computed, &child.blocks);
  return child;
}

// Applies a beam step (core/beam_search.h) once every live beam has its candidates.
void Engine::Impl::beam_step(Request* r) {
  BeamStep step = plan_beam_step(*r, eos_ids, max_model_len);
  if (!step.ready) return;
  counters.num_generated_tokens += step.generated;
  if (r->first_token_time == 0) r->first_token_time = now_seconds();
  std::vector<SeqState> children;
  if (!step.done) {
    for (size_t j = 0; j < step.next.size(); ++j) {
      const BeamCandidate& c = step.next[j];
      children.push_back(beam_child(r, *step.live[c.parent], c, static_cast<int32_t>(j)));
    }
  }
  for (SeqState* s : step.live) {
    scheduler->release(*s);
    owner.erase(s->seq->id);
  }
  mark_changed(r);
  if (step.done) {
    for (SeqState* s : step.live) {
      s->seq->status = SeqStatus::kFinished;
      s->seq->finish = FinishReason::kStop;
      s->has_candidates = false;
    }
    scheduler->remove(r);
    r->state = SeqStatus::kFinished;
    return;
  }
  r->forked = true;
  r->seqs = std::move(children);
}

std::vector<RequestDelta> Engine::Impl::collect_deltas() {
  std::vector<RequestDelta> deltas;
  for (Request* r : changed) {
    r->changed = false;
    RequestDelta d;
    if (build_delta(*r, &d)) deltas.push_back(std::move(d));
    if (r->state == SeqStatus::kFinished) {
      for (const SeqState& s : r->seqs) owner.erase(s.seq->id);
      const std::string id = r->id;  // r dies inside erase
      requests.erase(id);
    }
  }
  changed.clear();
  return deltas;
}

std::vector<RequestDelta> Engine::step() {
  Impl& m = *impl_;
  m.propose_drafts();
  SchedulerOutput out = m.scheduler->schedule();
  if (!out.empty()) {
    const double start = now_seconds();
    std::vector<SeqStepResult> results = m.executor->execute(out);
    // Steps of decodes alone (drafted or not) measure what a drafted token costs.
    int32_t drafted = 0;
    bool decodes_only = out.swap_in.empty() && out.swap_out.empty();
    for (const ScheduledSeq& ss : out.seqs) {
      drafted += static_cast<int32_t>(ss.draft.size());
      decodes_only = decodes_only && ss.num_new == 1 + static_cast<int32_t>(ss.draft.size()) &&
                     ss.seq->len() - ss.num_computed == 1;
    }
    if (decodes_only) m.speculator->time_step(drafted, now_seconds() - start);
    if (results.size() != out.seqs.size()) {
      throw std::runtime_error("executor returned " + str(results.size()) + " results for " +
                               str(out.seqs.size()) + " scheduled sequences");
    }
    ++m.counters.num_steps;
    for (size_t i = 0; i < results.size(); ++i) m.apply(out.seqs[i], results[i]);
    for (Request* r : m.beam_ready) m.beam_step(r);
    m.beam_ready.clear();
  }
  return m.collect_deltas();
}

bool Engine::has_unfinished() const { return !impl_->requests.empty(); }

int32_t Engine::num_unfinished() const {
  int32_t n = 0;
  for (const auto& kv : impl_->requests) n += kv.second->state != SeqStatus::kFinished;
  return n;
}

EngineMetrics Engine::metrics() const {
  const Impl& m = *impl_;
  EngineMetrics e = m.counters;
  const SchedulerStats& st = m.scheduler->stats();
  e.num_preemptions = st.num_preemptions;
  e.prefix_cache_queries = st.prefix_cache_queries;
  e.prefix_cache_hits = st.prefix_cache_hits;
  e.num_swapped_out = st.num_swapped_out;
  e.num_running = m.scheduler->num_running();
  e.num_waiting = m.scheduler->num_waiting();
  e.num_swapped = m.scheduler->num_swapped();
  e.kv_blocks_total = m.blocks->device().num_blocks();
  e.kv_blocks_used = e.kv_blocks_total - m.blocks->device().num_free();
  e.cpu_blocks_used = m.blocks->cpu().num_blocks() - m.blocks->cpu().num_free();
  return e;
}

}  // namespace taco
