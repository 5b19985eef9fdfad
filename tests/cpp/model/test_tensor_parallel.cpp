// Tensor parallelism without processes: how a model splits over ranks (heads, replicated KV
// heads, MLP, vocabulary), what a rank's checkpoint view serves (float, block-quantized and FP8
// weights), and the step plan's wire format, malformed messages included.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "memory_checkpoint.h"
#include "model/step_plan.h"
#include "model/tensor_parallel.h"

namespace taco {
namespace {

ModelConfig config(int64_t heads, int64_t kv_heads, int64_t inter, int64_t vocab) {
  ModelConfig c;
  c.hidden_size = 64;
  c.head_dim = 16;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.intermediate_size = inter;
  c.vocab_size = vocab;
  c.num_layers = 1;
  return c;
}

TEST(TensorParallelPlan, SplitsHeadsMlpAndVocabulary) {
  // SmolLM2-135M: 9 heads, 3 KV heads, MLP 1536, vocabulary 49152.
  const ModelConfig c = config(9, 3, 1536, 49152);
  for (int r = 0; r < 3; ++r) {
    const TensorParallel tp = plan_tensor_parallel(c, r, 3);
    EXPECT_EQ(tp.num_heads, 3);
    EXPECT_EQ(tp.q_head_start, 3 * r);
    EXPECT_EQ(tp.num_kv_heads, 1);
    EXPECT_EQ(tp.kv_head_start, r);
    EXPECT_EQ(tp.intermediate, 512);
    EXPECT_EQ(tp.inter_start, 512 * r);
    EXPECT_EQ(tp.vocab_rows, 16384);
    EXPECT_EQ(tp.vocab_start, 16384 * r);
  }
  const ModelConfig l = local_config(c, plan_tensor_parallel(c, 1, 3));
  EXPECT_EQ(l.num_heads, 3);
  EXPECT_EQ(l.num_kv_heads, 1);
  EXPECT_EQ(l.intermediate_size, 512);
  EXPECT_EQ(l.vocab_size, 49152);
}

TEST(TensorParallelPlan, ReplicatesKvHeadsWhenFewerThanRanks) {
  // 8 query heads over 4 ranks, 2 KV heads: ranks 0-1 hold KV head 0 (query heads 0-3).
  const ModelConfig c = config(8, 2, 128, 255);
  const int64_t expected[] = {0, 0, 1, 1};
  for (int r = 0; r < 4; ++r) {
    const TensorParallel tp = plan_tensor_parallel(c, r, 4);
    EXPECT_EQ(tp.num_kv_heads, 1);
    EXPECT_EQ(tp.kv_head_start, expected[r]);
    // Query head h attends with KV head h / (8 / 2): every local query head of rank r agrees.
    EXPECT_EQ(tp.q_head_start / 4, expected[r]);
    EXPECT_EQ((tp.q_head_start + tp.num_heads - 1) / 4, expected[r]);
  }
  // An odd vocabulary: ceil(255 / 4) = 64 rows each, the last rank 63.
  EXPECT_EQ(plan_tensor_parallel(c, 3, 4).vocab_rows, 63);
  EXPECT_EQ(plan_tensor_parallel(c, 3, 4).vocab_per_rank, 64);
}

TEST(TensorParallelPlan, RefusesSplitsThatDoNotDivide) {
  const auto message = [](const ModelConfig& c, int size) {
    try {
      plan_tensor_parallel(c, 0, size);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message(config(9, 3, 1536, 49152), 2).find("attention heads (9)"), std::string::npos);
  EXPECT_NE(message(config(8, 2, 100, 256), 8).find("intermediate_size (100)"), std::string::npos);
  EXPECT_NE(message(config(12, 3, 96, 256), 4).find("KV heads"), std::string::npos);
  EXPECT_NE(message(config(6, 3, 96, 256), 2).find("KV heads (3)"), std::string::npos);
  EXPECT_NE(message(config(4, 2, 64, 9), 4).find("vocabulary (9) is too small"), std::string::npos);
  EXPECT_THROW(plan_tensor_parallel(config(4, 2, 64, 256), 2, 2), std::invalid_argument);
}

TEST(ShardedCheckpoint, ServesEachRankItsRowsAndColumns) {
  const ModelConfig c = config(4, 2, 128, 10);
  test::MemoryCheckpoint base;
  const int64_t H = 64, D = 16;
  const auto ramp = [](int64_t n, int64_t k) { return at::arange(n * k, at::kFloat).view({n, k}); };
  base.tensors["model.embed_tokens.weight"] = ramp(10, H);
  base.tensors["model.layers.0.self_attn.q_proj.weight"] = ramp(4 * D, H);
  base.tensors["model.layers.0.self_attn.q_proj.bias"] = at::arange(4 * D, at::kFloat);
  base.tensors["model.layers.0.self_attn.k_proj.weight"] = ramp(2 * D, H);
  base.tensors["model.layers.0.self_attn.o_proj.weight"] = ramp(H, 4 * D);
  base.tensors["model.layers.0.self_attn.o_proj.bias"] = at::arange(H, at::kFloat);
  base.tensors["model.layers.0.mlp.down_proj.weight"] = ramp(H, 128);
  base.tensors["model.layers.0.input_layernorm.weight"] = at::ones({H});
  // down_proj as Q8_0 rows (34 bytes per 32 values) and FP8 codes.
  base.quant["model.layers.0.mlp.down_proj.weight"] = {
      kernels::QuantType::kQ8_0, at::arange(H * 4 * 34, at::kInt).to(at::kByte).view({H, 4 * 34}),
      128, at::Tensor()};
  base.fp8s["model.layers.0.self_attn.q_proj.weight"] = {
      at::arange(4 * D * H, at::kInt).to(at::kByte).view({4 * D, H}),
      at::arange(4 * D, at::kFloat)};

  const TensorParallel tp = plan_tensor_parallel(c, 1, 2);
  const ShardedCheckpoint s(base, c, tp);
  // Vocabulary rows 5-9; query heads 2-3; KV head 1; o_proj columns of heads 2-3; MLP 64-127.
  EXPECT_TRUE(
      at::equal(s.load("model.embed_tokens.weight", at::kFloat), ramp(10, H).narrow(0, 5, 5)));
  EXPECT_TRUE(at::equal(s.load("model.layers.0.self_attn.q_proj.weight", at::kFloat),
                        ramp(4 * D, H).narrow(0, 2 * D, 2 * D)));
  EXPECT_TRUE(at::equal(s.load("model.layers.0.self_attn.q_proj.bias", at::kFloat),
                        at::arange(2 * D, 4 * D, at::kFloat)));
  EXPECT_TRUE(at::equal(s.load("model.layers.0.self_attn.k_proj.weight", at::kFloat),
                        ramp(2 * D, H).narrow(0, D, D)));
  EXPECT_TRUE(at::equal(s.load("model.layers.0.self_attn.o_proj.weight", at::kFloat),
                        ramp(H, 4 * D).narrow(1, 2 * D, 2 * D)));
  EXPECT_TRUE(at::equal(s.load("model.layers.0.self_attn.o_proj.bias", at::kFloat),
                        at::arange(H, at::kFloat)));  // added once, after the reduction
  EXPECT_EQ(s.shape("model.layers.0.mlp.down_proj.weight"), (std::vector<int64_t>{H, 64}));
  EXPECT_TRUE(
      at::equal(s.load("model.layers.0.input_layernorm.weight", at::kFloat), at::ones({H})));

  const auto q = s.quantized("model.layers.0.mlp.down_proj.weight");
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q->cols, 64);
  EXPECT_TRUE(at::equal(
      q->rows, base.quant["model.layers.0.mlp.down_proj.weight"].rows.narrow(1, 2 * 34, 2 * 34)));
  const auto f = s.fp8("model.layers.0.self_attn.q_proj.weight");
  ASSERT_TRUE(f.has_value());
  EXPECT_TRUE(at::equal(f->scale, at::arange(2 * D, 4 * D, at::kFloat)));
  EXPECT_EQ(f->codes.size(0), 2 * D);

  // A column cut inside a block: served dequantized (load) instead.
  const ModelConfig odd = config(4, 2, 96, 10);
  base.tensors["model.layers.0.mlp.down_proj.weight"] = ramp(H, 96);
  base.quant["model.layers.0.mlp.down_proj.weight"].rows = at::zeros({H, 3 * 34}, at::kByte);
  base.quant["model.layers.0.mlp.down_proj.weight"].cols = 96;
  const ShardedCheckpoint s2(base, odd, plan_tensor_parallel(odd, 1, 2));
  EXPECT_FALSE(s2.quantized("model.layers.0.mlp.down_proj.weight").has_value());
}

StepPlan sample_plan() {
  StepPlan p;
  p.swap_in = {{1, 2}};
  p.swap_out = {{3, 4}, {5, 6}};
  p.copy = {{7, 8}};
  p.input_ids = {11, 12, 13};
  p.positions = {0, 1, 5};
  p.slot_mapping = {16, 17, 37};
  p.query_start_loc = {0, 2, 3};
  p.seq_lens = {2, 6};
  p.max_blocks = 2;
  p.block_table = {1, 0, 2, 3};
  p.max_query_len = 2;
  p.max_seq_len = 6;
  p.logit_rows = {1, 2};
  return p;
}

TEST(StepPlan, RoundTripsAndRefusesMalformedMessages) {
  const StepPlan p = sample_plan();
  const std::vector<int64_t> words = encode_step_plan(p);
  const StepPlan q = decode_step_plan(words);
  EXPECT_EQ(q.kind, StepPlan::Kind::kStep);
  EXPECT_EQ(q.swap_in, p.swap_in);
  EXPECT_EQ(q.swap_out, p.swap_out);
  EXPECT_EQ(q.copy, p.copy);
  EXPECT_EQ(q.input_ids, p.input_ids);
  EXPECT_EQ(q.positions, p.positions);
  EXPECT_EQ(q.slot_mapping, p.slot_mapping);
  EXPECT_EQ(q.query_start_loc, p.query_start_loc);
  EXPECT_EQ(q.seq_lens, p.seq_lens);
  EXPECT_EQ(q.block_table, p.block_table);
  EXPECT_EQ(q.max_seq_len, 6);
  EXPECT_EQ(q.logit_rows, p.logit_rows);

  StepPlan stop;
  stop.kind = StepPlan::Kind::kStop;
  EXPECT_EQ(decode_step_plan(encode_step_plan(stop)).kind, StepPlan::Kind::kStop);

  // Every truncation and every single-word change of a count is refused or still consistent.
  for (size_t n = 0; n < words.size(); ++n) {
    std::vector<int64_t> cut(words.begin(), words.begin() + n);
    EXPECT_THROW(decode_step_plan(cut), std::runtime_error) << n;
  }
  for (size_t i = 0; i < words.size(); ++i) {
    for (int64_t v : {int64_t{-1}, int64_t{1} << 40, int64_t{99}}) {
      std::vector<int64_t> bad = words;
      bad[i] = v;
      try {
        const StepPlan r = decode_step_plan(bad);
        for (int64_t row : r.logit_rows) {
          EXPECT_GE(row, 0);
          EXPECT_LT(row, static_cast<int64_t>(r.input_ids.size()));
        }
        EXPECT_EQ(r.block_table.size(), r.seq_lens.size() * static_cast<size_t>(r.max_blocks));
      } catch (const std::runtime_error&) {
      }
    }
  }
}

}  // namespace
}  // namespace taco
