// Scheduling through the engine: prefix caching, preemption and resumption, swapping, chunked
// prefill, aborts in every state, and capacity checks.
#include <gtest/gtest.h>

#include <stdexcept>

#include "core/scheduler.h"
#include "engine_harness.h"

namespace taco::test {
namespace {

TEST(Scheduling, PrefixHitsAreBlockAlignedAndZeroForUnrelatedPrompts) {
  EngineOptions o;
  o.enable_prefix_caching = true;
  Harness h = make_engine(o, {.num_device_blocks = 32, .block_size = 4}, 64);
  h.engine->add_request("a", iota_prompt(10, 1), sampling(3));
  run_all(*h.engine);
  std::vector<int32_t> b = iota_prompt(10, 1);
  b[9] = 99;
  h.engine->add_request("b", b, sampling(3));
  h.engine->add_request("c", iota_prompt(10, 50), sampling(3));
  auto out = run_all(*h.engine);
  EXPECT_EQ(out["b"].num_cached_tokens, 8);
  EXPECT_EQ(out["c"].num_cached_tokens, 0);
  EXPECT_EQ(out["b"].tokens[0], expected_stream(b, 0, 3, 100));
  const EngineMetrics m = h.engine->metrics();
  EXPECT_EQ(m.prefix_cache_hits, 8);
  EXPECT_EQ(m.prefix_cache_queries, 30);
  EXPECT_EQ(m.kv_blocks_used, 0);
}

TEST(Scheduling, FullyCachedPromptStillComputesItsLastToken) {
  EngineOptions o;
  o.enable_prefix_caching = true;
  Harness h = make_engine(o, {.num_device_blocks = 32, .block_size = 4}, 64);
  for (int32_t len : {8, 9}) {
    const std::vector<int32_t> p = iota_prompt(len, 3);
    h.engine->add_request("warm" + std::to_string(len), p, sampling(2));
    auto first = run_all(*h.engine);
    const int64_t before = h.exec->computed_tokens;
    h.engine->add_request("again" + std::to_string(len), p, sampling(2));
    auto again = run_all(*h.engine);
    const Collected& c = again["again" + std::to_string(len)];
    EXPECT_EQ(c.num_cached_tokens, len == 8 ? 4 : 8);
    // Computed now: the uncached prompt tail (>= 1 token) and one decode.
    EXPECT_EQ(h.exec->computed_tokens - before, len - c.num_cached_tokens + 1);
    EXPECT_EQ(c.tokens[0], first["warm" + std::to_string(len)].tokens[0]);
  }
}

// Scheduler-level: three requests outgrow six blocks; the newest is preempted first and later
// resumes with its output intact, recomputed as part of its prompt.
TEST(Scheduling, PreemptsNewestFirstAndResumesWithOutput) {
  BlockManager bm(6, 0, 4, false);
  Scheduler sched({.max_num_seqs = 8, .max_num_batched_tokens = 64}, bm);
  std::vector<std::unique_ptr<Request>> reqs;
  for (int i = 0; i < 3; ++i) {
    auto r = std::make_unique<Request>();
    r->id = std::to_string(i);
    r->opts.max_tokens = 100;
    r->prompt = std::make_shared<const std::vector<int32_t>>(iota_prompt(4, i * 10));
    r->prompt_logprobs_done = true;
    SeqState s;
    s.seq = std::make_unique<Sequence>();
    s.seq->id = i;
    s.seq->prompt = r->prompt;
    r->seqs.push_back(std::move(s));
    sched.add(r.get());
    reqs.push_back(std::move(r));
  }
  auto run = [&](const SchedulerOutput& out) {
    for (const ScheduledSeq& ss : out.seqs) {
      Sequence& q = *reqs[ss.seq_id]->seqs[0].seq;
      q.num_computed += ss.num_new;
      if (ss.do_sample) q.output.push_back(static_cast<int32_t>(q.output.size()));
    }
  };
  // Step 1 admits all three (one block each); steps to len 8 fit in 6 blocks.
  for (int step = 0; step < 5; ++step) run(sched.schedule());
  EXPECT_EQ(sched.stats().num_preemptions, 0);
  EXPECT_EQ(reqs[2]->seqs[0].seq->len(), 9);
  // Position 8 needs a third block each: the newest request (2) goes back to waiting.
  SchedulerOutput out = sched.schedule();
  EXPECT_EQ(sched.stats().num_preemptions, 1);
  EXPECT_EQ(reqs[2]->state, SeqStatus::kWaiting);
  EXPECT_EQ(reqs[2]->seqs[0].seq->num_computed, 0);
  EXPECT_TRUE(reqs[2]->seqs[0].blocks.blocks.empty());
  EXPECT_EQ(reqs[2]->seqs[0].seq->output.size(), 5u);
  EXPECT_EQ(reqs[0]->state, SeqStatus::kRunning);
  EXPECT_EQ(reqs[1]->state, SeqStatus::kRunning);
  EXPECT_EQ(out.seqs.size(), 2u);
  run(out);
  // Request 0 leaves; 2 is readmitted and recomputes prompt + output in one prefill.
  sched.remove(reqs[0].get());
  out = sched.schedule();
  bool resumed = false;
  for (const ScheduledSeq& ss : out.seqs) {
    if (ss.seq_id != 2) continue;
    resumed = true;
    EXPECT_EQ(ss.num_computed, 0);
    EXPECT_EQ(ss.num_new, 9);
    EXPECT_TRUE(ss.do_sample);
  }
  EXPECT_TRUE(resumed);
  EXPECT_EQ(reqs[2]->seqs[0].seq->output, (std::vector<int32_t>{0, 1, 2, 3, 4}));
  sched.remove(reqs[1].get());
  sched.remove(reqs[2].get());
  EXPECT_EQ(bm.device().num_free(), 6);
}

std::map<std::string, Collected> run_mix(EngineOptions o, int32_t blocks, int32_t cpu_blocks,
                                         EngineMetrics* m) {
  Harness h = make_engine(
      o, {.num_device_blocks = blocks, .num_cpu_blocks = cpu_blocks, .block_size = 4}, 32);
  for (int i = 0; i < 6; ++i) {
    h.engine->add_request("r" + std::to_string(i), iota_prompt(3 + 2 * i, i * 5),
                          sampling(i % 2 ? 14 : 9));
  }
  h.engine->add_request("n", iota_prompt(5, 77), sampling(8, 2));
  auto out = run_all(*h.engine);
  *m = h.engine->metrics();
  EXPECT_EQ(m->kv_blocks_used, 0);
  EXPECT_EQ(m->cpu_blocks_used, 0);
  return out;
}

TEST(Scheduling, PreemptionByRecomputeKeepsOutputs) {
  EngineMetrics big, small;
  auto ref = run_mix({}, 64, 0, &big);
  auto got = run_mix({}, 8, 0, &small);
  EXPECT_EQ(big.num_preemptions, 0);
  EXPECT_GT(small.num_preemptions, 0);
  ASSERT_EQ(ref.size(), got.size());
  for (auto& [id, c] : ref) EXPECT_EQ(c.tokens, got[id].tokens) << id;
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(ref["r" + std::to_string(i)].tokens[0],
              expected_stream(iota_prompt(3 + 2 * i, i * 5), 0, i % 2 ? 14 : 9, 100));
  }
}

TEST(Scheduling, SwapRoundTripKeepsOutputs) {
  EngineMetrics big, small;
  EngineOptions o;
  o.preemption_mode = PreemptionMode::kSwap;
  auto ref = run_mix(o, 64, 0, &big);
  auto got = run_mix(o, 8, 32, &small);
  EXPECT_GT(small.num_swapped_out, 0);
  for (auto& [id, c] : ref) EXPECT_EQ(c.tokens, got[id].tokens) << id;
}

TEST(Scheduling, ChunkedPrefillGivesTheSameStream) {
  auto run = [](bool chunked, int32_t budget, std::vector<int32_t>* chunks) {
    EngineOptions o;
    o.enable_chunked_prefill = chunked;
    o.max_num_batched_tokens = budget;
    Harness h = make_engine(o, {.num_device_blocks = 64, .block_size = 4}, 48);
    for (int i = 0; i < 4; ++i) {
      SamplingOptions s = sampling(6);
      s.prompt_logprobs = 1;
      h.engine->add_request("r" + std::to_string(i), iota_prompt(20 + 5 * i, i), s);
    }
    auto out = run_all(*h.engine);
    for (auto& [id, c] : out) {
      EXPECT_EQ(c.num_prompt_logprob_deltas, 1) << id;
      EXPECT_EQ(c.prompt_logprobs.size(), 19 + 5 * (id[1] - '0')) << id;
    }
    EXPECT_LE(h.exec->max_batched_tokens, h.engine->options().max_num_batched_tokens);
    *chunks = h.exec->chunk_sizes;
    return out;
  };
  std::vector<int32_t> chunks;
  auto ref = run(false, 0, &chunks);
  for (int32_t budget : {1, 7, 16}) {
    auto got = run(true, budget, &chunks);
    for (auto& [id, c] : ref) EXPECT_EQ(c.tokens, got[id].tokens) << id << " budget " << budget;
    EXPECT_LE(*std::max_element(chunks.begin(), chunks.end()), budget);
  }
}

TEST(Scheduling, AbortInEveryStateFreesEveryBlock) {
  EngineOptions o;
  o.max_num_seqs = 3;
  o.preemption_mode = PreemptionMode::kSwap;
  Harness h = make_engine(o, {.num_device_blocks = 8, .num_cpu_blocks = 4, .block_size = 4}, 32);
  // Fill the cache so that preemption (swap first, then recompute when CPU is full) happens.
  for (int i = 0; i < 5; ++i) {
    h.engine->add_request(std::to_string(i), iota_prompt(6, i), sampling(20));
  }
  bool saw_swapped = false;
  for (int step = 0; step < 12; ++step) {
    h.engine->step();
    const EngineMetrics m = h.engine->metrics();
    saw_swapped |= m.num_swapped > 0;
  }
  EXPECT_TRUE(saw_swapped);
  EXPECT_GT(h.engine->metrics().num_preemptions, 0);
  for (int i = 0; i < 5; ++i) h.engine->abort(std::to_string(i));
  EngineMetrics m = h.engine->metrics();
  EXPECT_EQ(m.kv_blocks_used, 0);
  EXPECT_EQ(m.cpu_blocks_used, 0);
  EXPECT_EQ(m.num_running + m.num_waiting + m.num_swapped, 0);
  EXPECT_FALSE(h.engine->has_unfinished());
  EXPECT_FALSE(h.engine->abort("0"));
}

// Each state on its own: waiting, running, swapped, and preempted for recompute.
TEST(Scheduling, AbortEachState) {
  EngineOptions o;
  o.max_num_seqs = 2;
  o.preemption_mode = PreemptionMode::kSwap;
  Harness h = make_engine(o, {.num_device_blocks = 8, .num_cpu_blocks = 8, .block_size = 4}, 32);
  h.engine->add_request("old", iota_prompt(4, 0), sampling(25));
  h.engine->add_request("new", iota_prompt(4, 1), sampling(25));
  h.engine->add_request("waiting", iota_prompt(4, 2), sampling(25));
  h.engine->step();
  EXPECT_EQ(h.engine->metrics().num_waiting, 1);
  EXPECT_TRUE(h.engine->abort("waiting"));
  while (h.engine->metrics().num_swapped == 0) h.engine->step();
  EXPECT_GT(h.engine->metrics().cpu_blocks_used, 0);
  EXPECT_TRUE(h.engine->abort("new"));  // swapped
  EXPECT_EQ(h.engine->metrics().cpu_blocks_used, 0);
  EXPECT_TRUE(h.engine->abort("old"));  // running
  EXPECT_EQ(h.engine->metrics().kv_blocks_used, 0);

  EngineOptions r;
  r.max_num_seqs = 2;
  Harness g = make_engine(r, {.num_device_blocks = 8, .block_size = 4}, 32);
  g.engine->add_request("old", iota_prompt(4, 0), sampling(25));
  g.engine->add_request("new", iota_prompt(4, 1), sampling(25));
  while (g.engine->metrics().num_preemptions == 0) g.engine->step();
  EXPECT_EQ(g.engine->metrics().num_waiting, 1);
  EXPECT_TRUE(g.engine->abort("new"));  // preempted, output kept, waiting to recompute
  EXPECT_TRUE(g.engine->abort("old"));
  EXPECT_EQ(g.engine->metrics().kv_blocks_used, 0);
  EXPECT_FALSE(g.engine->has_unfinished());
  EXPECT_TRUE(g.engine->step().empty());
}

TEST(Scheduling, InfeasibleRequestsAreRejected) {
  EXPECT_THROW(make_engine({}, {.num_device_blocks = 3, .block_size = 4}, 16), std::runtime_error);
  EngineOptions small_batch;
  small_batch.max_num_batched_tokens = 8;
  EXPECT_THROW(make_engine(small_batch, {.num_device_blocks = 8, .block_size = 4}, 16),
               std::invalid_argument);
  Harness h = make_engine({}, {.num_device_blocks = 8, .block_size = 4}, 16);
  auto expect_reject = [&](const std::string& id, std::vector<int32_t> p, SamplingOptions s,
                           const std::string& needle, bool queued_before = false) {
    try {
      h.engine->add_request(id, p, s);
      ADD_FAILURE() << "accepted " << id;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_EQ(h.engine->num_unfinished(), queued_before ? 1 : 0);
  };
  expect_reject("empty", {}, sampling(4), "Prompt cannot be empty");
  expect_reject("long", iota_prompt(17, 0), sampling(4),
                "prompt has 17 tokens, more than max_model_len 16");
  expect_reject("neg", {1, -1}, sampling(4), "Token id -1 at position 1 is out of vocabulary");
  expect_reject("big", {1, 100}, sampling(4), "Token id 100 at position 1");
  SamplingOptions hot = sampling(4);
  hot.top_p = 1.5f;
  expect_reject("hot", iota_prompt(4, 0), hot, "request 'hot': top_p must be in (0, 1], got 1.5");
  SamplingOptions few = sampling(4, 2, 1);
  expect_reject("few", iota_prompt(4, 0), few, "best_of must be >= n, got 1");
  expect_reject("fat", iota_prompt(8, 0), sampling(8, 4), "KV blocks");
  SamplingOptions beam = sampling(8, 1, 3);
  beam.use_beam_search = true;
  expect_reject("beam", iota_prompt(8, 0), beam, "KV blocks for 3 sequence(s)");
  h.engine->add_request("ok", iota_prompt(4, 0), sampling(4));
  expect_reject("ok", iota_prompt(4, 0), sampling(4), "already in use", true);
  auto out = run_all(*h.engine);
  EXPECT_EQ(out["ok"].tokens[0].size(), 4u);
}

}  // namespace
}  // namespace taco::test
