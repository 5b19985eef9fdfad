#include "model/model_runner.h"

#include <c10/core/DeviceGuard.h>
#include <c10/core/InferenceMode.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "core/sampling_options.h"
#include "core/sequence.h"
#include "ops/ops.h"

namespace taco {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

double device_space_gib(const EngineOptions& opts) {
  if (opts.cpu_kvcache_space_gib > 0) return opts.cpu_kvcache_space_gib;
  const char* env = std::getenv("TACO_CPU_KVCACHE_SPACE");
  if (env == nullptr || *env == '\0') return 4.0;
  char* end = nullptr;
  const double gib = std::strtod(env, &end);
  if (end == env || *end != '\0' || !(gib > 0)) {
    throw std::invalid_argument(std::string("TACO_CPU_KVCACHE_SPACE must be a positive number of "
                                            "GiB, got \"") +
                                env + "\"");
  }
  return gib;
}

// Read-only views of host vectors (from_blob wants a mutable pointer; nothing writes through it).
at::Tensor int_tensor(const std::vector<int32_t>& v, std::vector<int64_t> shape) {
  return at::from_blob(const_cast<int32_t*>(v.data()), shape, at::kInt);
}

at::Tensor long_tensor(const std::vector<int64_t>& v) {
  return at::from_blob(const_cast<int64_t*>(v.data()), {static_cast<int64_t>(v.size())}, at::kLong);
}

// Each step allocates and frees activations of up to tens of MB (a 2048-token chunk's MLP is
// 12 MB in bf16). glibc serves blocks over its mmap threshold with fresh mappings and returns a
// freed heap top to the kernel, so every step would fault those pages in again (5 % of the
// batch workload's time, in clear_page): keep blocks under 64 MiB on the heap and the heap
// mapped. The per-layer KV caches, larger, are still mapped lazily.
void keep_activations_on_heap() {
#ifdef __GLIBC__
  static const bool done = [] {
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
    return true;
  }();
  (void)done;
#endif
}

}  // namespace

at::ScalarType kv_cache_dtype(const EngineOptions& opts, at::ScalarType dtype) {
  if (opts.kv_cache_dtype == "fp8" || opts.kv_cache_dtype == "fp8_e4m3") {
    return at::kFloat8_e4m3fn;
  }
  if (opts.kv_cache_dtype == "fp8_e5m2") return at::kFloat8_e5m2;
  return dtype;
}

double kv_block_bytes(const EngineOptions& opts, const ModelConfig& c, at::ScalarType dtype) {
  return 2.0 * c.num_layers * c.num_kv_heads * opts.block_size * c.head_dim *
         static_cast<double>(at::elementSize(kv_cache_dtype(opts, dtype)));
}

int32_t swap_blocks(const EngineOptions& opts, double block_bytes) {
  return static_cast<int32_t>(std::min(opts.swap_space_gib * kGiB / block_bytes, 1e9));
}

KvCacheSize kv_cache_size(const EngineOptions& opts, const ModelConfig& c, at::ScalarType dtype) {
  const double block_bytes = kv_block_bytes(opts, c, dtype);
  KvCacheSize s;
  if (opts.num_gpu_blocks_override > 0) {
    s.num_device_blocks = opts.num_gpu_blocks_override;
  } else {
    s.num_device_blocks =
        static_cast<int32_t>(std::min(device_space_gib(opts) * kGiB / block_bytes, 1e9));
  }
  s.num_cpu_blocks = swap_blocks(opts, block_bytes);
  return s;
}

// Flat batch buffers, reused across steps (clear() keeps their capacity). The StepPlan part is
// what every tensor-parallel rank runs; the rest is rank 0's sampling bookkeeping.
struct ModelRunner::Batch : StepPlan {
  std::vector<size_t> sample_seqs;  // index into out.seqs per sampled row
  std::vector<int32_t> sample_pos;  // per sampled row: drafted tokens before it (0: none)
  std::vector<size_t> prompt_seqs;  // per seq with prompt logprobs: index into out.seqs
  std::vector<int32_t> prompt_counts, prompt_targets;

  void clear() {
    kind = Kind::kStep;
    input_ids.clear(), positions.clear(), slot_mapping.clear();
    query_start_loc.assign(1, 0), seq_lens.clear(), block_table.clear();
    max_blocks = max_query_len = max_seq_len = 0;
    logit_rows.clear(), sample_seqs.clear(), sample_pos.clear(), prompt_seqs.clear();
    prompt_counts.clear(), prompt_targets.clear();
  }
};

ModelRunner::ModelRunner(std::unique_ptr<LlamaModel> model, const EngineOptions& opts,
                         KvCacheSize size, std::vector<int32_t> eos_token_ids,
                         std::unique_ptr<ops::Communicator> comm)
    : model_(std::move(model)),
      device_(model_->device()),
      block_size_(opts.block_size),
      num_device_blocks_(size.num_device_blocks),
      num_cpu_blocks_(size.num_cpu_blocks),
      sampler_(static_cast<int32_t>(model_->config().vocab_size), std::move(eos_token_ids),
               opts.seed) {
  sampler_.set_logits_hook(opts.logits_hook);
  sampler_.set_guide_hook(opts.guide_hook);
  sampler_.set_logprobs_mode(opts.logprobs_mode);
  sampler_.set_per_sequence_draws(!opts.speculative_method.empty());
  keep_activations_on_heap();
  const ModelConfig& c = model_->config();
  const auto options = at::TensorOptions().dtype(kv_cache_dtype(opts, model_->dtype()));
  // Uninitialized on purpose: a block is always written before attention reads it, and untouched
  // pages of a large CPU cache cost no memory.
  for (int64_t l = 0; l < c.num_layers; ++l) {
    kv_caches_.push_back(at::empty({2, num_device_blocks_, c.num_kv_heads, block_size_, c.head_dim},
                                   options.device(device_)));
  }
  // Swap space: pinned for a GPU (DMA without a staging copy), and one allocation for all layers
  // since the pinned allocator rounds each request up to a power of two.
  if (num_cpu_blocks_ > 0) {
    const at::Tensor swap =
        at::empty({c.num_layers, 2, num_cpu_blocks_, c.num_kv_heads, block_size_, c.head_dim},
                  options.pinned_memory(!device_.is_cpu()));
    for (int64_t l = 0; l < c.num_layers; ++l) cpu_caches_.push_back(swap.select(0, l));
  }
  batch_ = std::make_unique<Batch>();
  if (opts.enable_lora || opts.enable_prompt_adapter) {
    if (comm != nullptr && comm->world_size() > 1) {
      throw std::invalid_argument(
          "adapters (enable_lora, enable_prompt_adapter) are not supported "
          "with tensor parallelism yet");
    }
    adapters_ = std::make_unique<AdapterSlots>(*model_, opts);
  }
  if (comm != nullptr && comm->world_size() > 1) comm_ = std::move(comm);
  // An empty cache fails the engine's capacity check next; capturing over it would read block 0.
  // Tensor-parallel ranks capture their decode steps only when every all-reduce in them takes our
  // IPC kernel (the largest is the embedding's or a layer's output, [batch, H] in the model
  // dtype); every rank decides alike and captures the same graphs in the same order. Models
  // with offloaded layers run eagerly (their copies are not captured).
  const int64_t row_bytes =
      model_->config().hidden_size * static_cast<int64_t>(at::elementSize(model_->dtype()));
  const int64_t largest_reduce = decode_graph_max_batch(opts.max_num_seqs) * row_bytes;
  const bool collectives_capture = comm_ == nullptr || (comm_->cuda_graph_safe(largest_reduce) &&
                                                        comm_->cuda_graph_safe(row_bytes));
  if (device_.is_cuda() && !opts.enforce_eager && num_device_blocks_ > 0 && collectives_capture &&
      model_->offloaded_layers() == 0) {
    graphs_ = std::make_unique<DecodeGraphs>(*model_, opts, kv_caches_);
  }
  // Last: from here rank 0's heartbeat may talk to the other ranks.
  if (comm_ && comm_->rank() == 0) driver_ = std::make_unique<TpDriver>(*comm_);
}

ModelRunner::~ModelRunner() = default;

at::Tensor ModelRunner::to_device(at::Tensor host) const {
  return device_.is_cpu() ? host : host.to(device_);
}

// Order: swap out (frees device blocks), swap in, then copy-on-write copies.
void ModelRunner::move_blocks(const StepPlan& out) {
  if (!out.swap_out.empty()) ops::swap_blocks(kv_caches_, cpu_caches_, out.swap_out);
  if (!out.swap_in.empty()) ops::swap_blocks(cpu_caches_, kv_caches_, out.swap_in);
  if (!out.copy.empty()) ops::copy_blocks(kv_caches_, out.copy);
}

// The scheduler is trusted code, but a bad slot or block id would corrupt memory in the kernels:
// check them (a few integer compares per token).
void ModelRunner::check_scheduled(const ScheduledSeq& s) const {
  const int32_t end = s.num_computed + s.num_new;
  const int64_t num_slots = int64_t{num_device_blocks_} * block_size_;
  const auto drafted = static_cast<int32_t>(s.draft.size());
  bool ok = s.num_new > drafted && s.num_computed >= 0 && end <= s.seq->len() + drafted &&
            (drafted == 0 || (s.do_sample && end == s.seq->len() + drafted)) &&
            static_cast<int64_t>(s.slot_mapping.size()) == s.num_new &&
            static_cast<int64_t>(s.block_table.size()) * block_size_ >= end;
  for (int64_t slot : s.slot_mapping) ok = ok && slot < num_slots;
  for (int32_t block : s.block_table) ok = ok && block >= 0 && block < num_device_blocks_;
  if (!ok) {
    throw std::logic_error("scheduled sequence " + std::to_string(s.seq_id) +
                           " has inconsistent lengths, slots or block ids");
  }
}

void ModelRunner::build_batch(const SchedulerOutput& out, Batch& b) const {
  b.clear();
  b.swap_in = out.swap_in, b.swap_out = out.swap_out, b.copy = out.copy;
  for (const ScheduledSeq& s : out.seqs) {
    b.max_blocks = std::max<int64_t>(b.max_blocks, s.block_table.size());
  }
  std::vector<int64_t> prompt_rows;
  for (size_t i = 0; i < out.seqs.size(); ++i) {
    const ScheduledSeq& s = out.seqs[i];
    const int64_t first_row = static_cast<int64_t>(b.input_ids.size());
    const int32_t end = s.num_computed + s.num_new;
    check_scheduled(s);
    const int32_t len = s.seq->len();
    for (int32_t p = s.num_computed; p < end; ++p) {
      b.input_ids.push_back(p < len ? s.seq->token_at(p) : s.draft[p - len]);
      b.positions.push_back(p);
    }
    b.slot_mapping.insert(b.slot_mapping.end(), s.slot_mapping.begin(), s.slot_mapping.end());
    b.query_start_loc.push_back(static_cast<int32_t>(b.input_ids.size()));
    b.seq_lens.push_back(end);
    b.block_table.insert(b.block_table.end(), s.block_table.begin(), s.block_table.end());
    b.block_table.resize(b.seq_lens.size() * b.max_blocks, 0);
    b.max_query_len = std::max<int64_t>(b.max_query_len, s.num_new);
    b.max_seq_len = std::max<int64_t>(b.max_seq_len, end);
    if (s.do_sample) {
      // The last token's row, then one per drafted token: each samples what follows it.
      const auto drafted = static_cast<int32_t>(s.draft.size());
      for (int32_t j = 0; j <= drafted; ++j) {
        b.logit_rows.push_back(first_row + s.num_new - 1 - drafted + j);
        b.sample_seqs.push_back(i);
        b.sample_pos.push_back(j);
      }
    }
    if (s.want_prompt_logprobs) {
      // Row p predicts prompt token p + 1: this chunk covers targets num_computed+1 .. up to
      // the last prompt token, so the chunks together cover prompt tokens 1 .. P-1 in order.
      const int32_t stop = std::min(end, s.seq->prompt_len() - 1);
      const int32_t count = std::max(0, stop - s.num_computed);
      for (int32_t p = s.num_computed; p < s.num_computed + count; ++p) {
        prompt_rows.push_back(first_row + (p - s.num_computed));
        b.prompt_targets.push_back(s.seq->token_at(p + 1));
      }
      b.prompt_seqs.push_back(i);
      b.prompt_counts.push_back(count);
    }
  }
  b.logit_rows.insert(b.logit_rows.end(), prompt_rows.begin(), prompt_rows.end());
}

// The rows a drafted token's logits are sampled for: the sequence as it would be had the drafts
// before it been sampled (penalties, min_tokens, processors and seeded draws see that output).
struct ModelRunner::DraftRows {
  std::vector<Sequence> seqs;
  std::vector<ScheduledSeq> rows;
  std::vector<SeqStepResult> results;

  // Room for every drafted row up front: rows point into these vectors.
  void reserve(const std::vector<int32_t>& sample_pos) {
    const auto n = static_cast<size_t>(
        std::count_if(sample_pos.begin(), sample_pos.end(), [](int32_t j) { return j > 0; }));
    seqs.reserve(n), rows.reserve(n), results.reserve(n);
  }
  const ScheduledSeq* add(const ScheduledSeq& s, int32_t drafted_before) {
    seqs.push_back(*s.seq);
    seqs.back().output.insert(seqs.back().output.end(), s.draft.begin(),
                              s.draft.begin() + drafted_before);
    ScheduledSeq row;
    row.seq_id = s.seq_id;
    row.seq = &seqs.back();
    row.sampling = s.sampling;
    row.do_sample = true;
    rows.push_back(std::move(row));
    results.emplace_back().seq_id = s.seq_id;
    return &rows.back();
  }
};

// Verification: a drafted token is accepted when it equals the token sampled at the position
// before it, and the sequence then also keeps what was sampled after it. Drawing at each
// position as without drafts and comparing keeps the output distribution (and a seeded
// request's tokens) exactly those of plain decoding.
void ModelRunner::accept_drafts(const SchedulerOutput& out, const Batch& b,
                                const std::vector<SeqStepResult*>& res,
                                std::vector<SeqStepResult>& results) {
  for (size_t k = 0; k < b.sample_seqs.size(); ++k) {
    if (b.sample_pos[k] != 0) continue;
    const ScheduledSeq& s = out.seqs[b.sample_seqs[k]];
    SeqStepResult& first = results[b.sample_seqs[k]];
    int32_t prev = first.token;
    for (size_t j = 0; j < s.draft.size() && s.draft[j] == prev; ++j) {
      SeqStepResult& r = *res[k + 1 + j];
      prev = r.token;
      first.next.push_back(std::move(r));
    }
  }
}

void ModelRunner::fill_prompt_logprobs(const SchedulerOutput& out, const Batch& b,
                                       const at::Tensor& logits,
                                       std::vector<SeqStepResult>& results) const {
  int64_t row = static_cast<int64_t>(b.sample_seqs.size());
  size_t target = 0;
  for (size_t j = 0; j < b.prompt_seqs.size(); ++j) {
    const size_t i = b.prompt_seqs[j];
    const int32_t count = b.prompt_counts[j];
    if (count == 0) continue;
    std::vector<int32_t> targets(b.prompt_targets.begin() + target,
                                 b.prompt_targets.begin() + target + count);
    results[i].prompt_logprobs = Sampler::prompt_logprobs(logits.narrow(0, row, count), targets,
                                                          out.seqs[i].sampling->prompt_logprobs);
    row += count;
    target += count;
  }
}

AdapterInfo ModelRunner::load_adapter(AdapterKind kind, int64_t id, const std::string& path) {
  if (!adapters_) {
    throw std::invalid_argument(
        "adapter " + path + ": the engine was made without enable_lora / enable_prompt_adapter");
  }
  c10::InferenceMode guard;
  const c10::DeviceGuard device_guard(device_);
  return adapters_->load(kind, id, path);
}

void ModelRunner::unload_adapter(AdapterKind kind, int64_t id) {
  if (adapters_) adapters_->unload(kind, id);
}

// Slots for the step's LoRAs (copied in when missing) and the prompt adapters' rows: a sequence
// of prompt adapter p computes positions [num_computed, end) of which those below p's
// num_virtual_tokens are virtual.
void ModelRunner::prepare_adapters(const SchedulerOutput& out, StepAdapters& a) {
  a.lora_slots.clear();
  a.embed_rows.clear();
  a.embed_values = at::Tensor();
  if (!adapters_) return;
  std::vector<int64_t> ids;
  std::vector<at::Tensor> values;
  int64_t row = 0;
  for (const ScheduledSeq& s : out.seqs) {
    const int64_t lora = s.sampling->lora_id;
    if (lora != 0 && std::find(ids.begin(), ids.end(), lora) == ids.end()) ids.push_back(lora);
    if (s.sampling->prompt_adapter_id != 0) {
      const at::Tensor& e = adapters_->prompt_embeddings(s.sampling->prompt_adapter_id);
      const int64_t virt = std::min<int64_t>(e.size(0), s.num_computed + s.num_new);
      for (int64_t p = s.num_computed; p < virt; ++p)
        a.embed_rows.push_back(row + p - s.num_computed);
      if (virt > s.num_computed)
        values.push_back(e.narrow(0, s.num_computed, virt - s.num_computed));
    }
    row += s.num_new;
  }
  if (!values.empty()) a.embed_values = values.size() == 1 ? values[0] : at::cat(values, 0);
  if (ids.empty()) return;
  adapters_->prepare(ids);
  a.lora_slots.reserve(row);
  for (const ScheduledSeq& s : out.seqs) {
    const int32_t slot = s.sampling->lora_id != 0 ? adapters_->slot_of(s.sampling->lora_id) : -1;
    a.lora_slots.insert(a.lora_slots.end(), s.num_new, slot);
  }
}

// A decode-only batch without adapters replays a captured graph when one fits; anything else
// runs eagerly.
at::Tensor ModelRunner::forward(const StepPlan& b, const StepAdapters* adapters) {
  const auto B = static_cast<int64_t>(b.seq_lens.size());
  const bool adapted = adapters != nullptr && !adapters->empty();
  if (graphs_ && !adapted && b.max_query_len == 1 && graphs_->fits(B, b.max_seq_len)) {
    return graphs_->run(
        {b.input_ids, b.positions, b.slot_mapping, b.seq_lens, b.block_table, b.max_blocks});
  }
  AttentionMetadata md;
  md.positions = to_device(long_tensor(b.positions));
  md.slot_mapping = to_device(long_tensor(b.slot_mapping));
  md.query_start_loc = to_device(int_tensor(b.query_start_loc, {B + 1}));
  md.seq_lens = to_device(int_tensor(b.seq_lens, {B}));
  md.block_table = to_device(int_tensor(b.block_table, {B, b.max_blocks}));
  md.max_query_len = b.max_query_len;
  md.max_seq_len = b.max_seq_len;
  at::Tensor embed_rows;
  if (adapted && !adapters->lora_slots.empty()) {
    md.lora_slots = to_device(
        int_tensor(adapters->lora_slots, {static_cast<int64_t>(adapters->lora_slots.size())}));
  }
  if (adapted && !adapters->embed_rows.empty())
    embed_rows = to_device(long_tensor(adapters->embed_rows));
  return model_->forward(to_device(long_tensor(b.input_ids)), md, kv_caches_, embed_rows,
                         adapters != nullptr ? adapters->embed_values : at::Tensor());
}

// The forward and the logits every rank computes for one plan: the rows of logit_rows, or an
// undefined tensor when none. Rank 0 passes the step's SchedulerOutput for its adapters, which
// are prepared after the block moves: an adapter that fails to load then leaves the KV cache as
// the scheduler expects it.
at::Tensor ModelRunner::run_plan(const StepPlan& plan, const SchedulerOutput* out) {
  move_blocks(plan);
  if (plan.seq_lens.empty()) return {};
  const StepAdapters* adapters = nullptr;
  if (out != nullptr) {
    prepare_adapters(*out, step_adapters_);
    adapters = &step_adapters_;
  }
  const at::Tensor hidden = forward(plan, adapters);
  if (plan.logit_rows.empty()) return {};
  return model_->compute_logits(hidden.index_select(0, to_device(long_tensor(plan.logit_rows))));
}

void ModelRunner::serve() {
  if (comm_ == nullptr || comm_->rank() == 0) {
    throw std::logic_error("ModelRunner::serve runs on tensor-parallel ranks other than 0");
  }
  c10::InferenceMode guard;
  const c10::DeviceGuard device_guard(device_);
  for (;;) {
    const StepPlan plan = receive_step_plan(*comm_);
    if (plan.kind == StepPlan::Kind::kStop) return;
    if (plan.kind == StepPlan::Kind::kStep) run_plan(plan);
  }
}

std::vector<SeqStepResult> ModelRunner::execute(const SchedulerOutput& out) {
  c10::InferenceMode guard;
  // Steps may run on any thread; a rank's device is not always device 0.
  const c10::DeviceGuard device_guard(device_);
  std::vector<SeqStepResult> results(out.seqs.size());
  for (size_t i = 0; i < out.seqs.size(); ++i) results[i].seq_id = out.seqs[i].seq_id;
  Batch& b = *batch_;
  build_batch(out, b);
  // The whole step holds the driver: the other ranks run this plan's collectives in this order.
  std::unique_lock<std::mutex> step;
  at::Tensor logits;
  try {
    if (driver_) step = driver_->begin_step(b);
    logits = run_plan(b, &out);
  } catch (const std::exception& e) {
    if (!driver_) throw;
    // The other ranks may be waiting in a collective this rank will never join: the group is
    // done for. The message says so, so that the caller releases every rank at once.
    driver_->fail(step, e.what());
    throw std::runtime_error(std::string("tensor parallel: a step failed: ") + e.what());
  }
  if (!logits.defined()) return results;
  const auto num_sampled = static_cast<int64_t>(b.sample_seqs.size());
  std::vector<const ScheduledSeq*> rows;
  std::vector<SeqStepResult*> res;
  DraftRows drafts;
  drafts.reserve(b.sample_pos);
  for (size_t k = 0; k < b.sample_seqs.size(); ++k) {
    const size_t i = b.sample_seqs[k];
    if (b.sample_pos[k] == 0) {
      rows.push_back(&out.seqs[i]);
      res.push_back(&results[i]);
    } else {
      rows.push_back(drafts.add(out.seqs[i], b.sample_pos[k]));
      res.push_back(&drafts.results.back());
    }
  }
  // Guided rows' token bitmasks: one call of the guide hook per step, after the forward.
  const GuideMasks guides = sampler_.guide(rows);
  // On a GPU, plain greedy batches take their tokens from the device, and batches without
  // processors, beams or prompt logprobs sample there (guided rows masked there first);
  // everything else samples on the CPU, where the logits rows come back to.
  if (!device_.is_cpu() && num_sampled == logits.size(0)) {
    const bool argmax = sampler_.argmax_suffices(rows);
    if (argmax || sampler_.device_suffices(rows)) {
      logits = logits.contiguous();
      sampler_.apply_guides_on_device(logits, guides);
      if (argmax) {
        sampler_.sample_argmax(logits, res);
      } else {
        sampler_.sample_on_device(logits, rows, res);
      }
      accept_drafts(out, b, res, results);
      return results;
    }
  }
  logits = logits.to(at::kCPU).contiguous();
  if (num_sampled > 0) {
    at::Tensor sample_logits = logits.narrow(0, 0, num_sampled);
    sampler_.sample(sample_logits, rows, res, guides);
  }
  accept_drafts(out, b, res, results);
  fill_prompt_logprobs(out, b, logits, results);
  return results;
}

}  // namespace taco
