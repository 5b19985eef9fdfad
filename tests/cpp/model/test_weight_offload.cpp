// cpu_offload_gb's mechanism on the CPU (where the engine itself never offloads): a tiny model
// whose first layers live in "host" copies and are staged into two slots as they run gives
// bit-identical hidden states to the same model held whole, step after step (a prefill, then
// decodes over the cache it wrote), with every layer offloaded or only the first.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

#include "memory_checkpoint.h"
#include "model/llama.h"

namespace taco {
namespace {

ModelConfig tiny_config() {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_layers = 3;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.vocab_size = 50;
  c.max_position_embeddings = 64;
  c.tie_word_embeddings = true;
  return c;
}

test::MemoryCheckpoint tiny_weights(const ModelConfig& c) {
  at::manual_seed(0);
  test::MemoryCheckpoint w;
  const auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    w.tensors[name] = at::randn(shape) * 0.2;
  };
  const int64_t H = c.hidden_size, I = c.intermediate_size, D = c.head_dim;
  add("model.embed_tokens.weight", {c.vocab_size, H});
  add("model.norm.weight", {H});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {H});
    add(p + "post_attention_layernorm.weight", {H});
    add(p + "self_attn.q_proj.weight", {c.num_heads * D, H});
    add(p + "self_attn.k_proj.weight", {c.num_kv_heads * D, H});
    add(p + "self_attn.v_proj.weight", {c.num_kv_heads * D, H});
    add(p + "self_attn.o_proj.weight", {H, c.num_heads * D});
    add(p + "mlp.gate_proj.weight", {I, H});
    add(p + "mlp.up_proj.weight", {I, H});
    add(p + "mlp.down_proj.weight", {H, I});
  }
  return w;
}

// A prefill of 9 tokens, then 3 decodes, over one sequence in blocks 0-1 of 16 slots; returns
// every step's hidden states.
std::vector<at::Tensor> run_steps(const LlamaModel& m, const ModelConfig& c) {
  std::vector<at::Tensor> caches;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    caches.push_back(at::zeros({2, 2, c.num_kv_heads, 16, c.head_dim}));
  }
  std::vector<at::Tensor> out;
  int64_t pos = 0;
  for (int64_t n : {9, 1, 1, 1}) {
    AttentionMetadata md;
    md.positions = at::arange(pos, pos + n, at::kLong);
    md.slot_mapping = md.positions.clone();
    md.query_start_loc = at::tensor({0, static_cast<int>(n)}, at::kInt);
    md.seq_lens = at::tensor({static_cast<int>(pos + n)}, at::kInt);
    md.block_table = at::tensor({0, 1}, at::kInt).view({1, 2});
    md.max_query_len = n;
    md.max_seq_len = pos + n;
    const at::Tensor ids = (at::arange(pos, pos + n, at::kLong) * 7 + 3) % c.vocab_size;
    out.push_back(m.forward(ids, md, caches).clone());
    pos += n;
  }
  return out;
}

TEST(WeightOffload, StagedLayersGiveTheSameHiddenStates) {
  const ModelConfig c = tiny_config();
  const test::MemoryCheckpoint w = tiny_weights(c);
  const LlamaModel whole(c, w, at::kFloat, 64);
  EXPECT_EQ(whole.offloaded_layers(), 0);
  const std::vector<at::Tensor> want = run_steps(whole, c);

  const LlamaModel all(c, w, at::kFloat, 64, at::kCPU, nullptr, 1e9);
  EXPECT_EQ(all.offloaded_layers(), 3);
  // One layer: 4 q/k/v/o + 3 MLP projections and two norms, float32.
  const int64_t layer_bytes = 4 * (64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 128 * 64 + 2 * 64);
  EXPECT_EQ(all.offloaded_bytes(), 3 * layer_bytes);
  const LlamaModel first(c, w, at::kFloat, 64, at::kCPU, nullptr, 1.5 * layer_bytes);
  EXPECT_EQ(first.offloaded_layers(), 1);
  const LlamaModel none(c, w, at::kFloat, 64, at::kCPU, nullptr, 0.5 * layer_bytes);
  EXPECT_EQ(none.offloaded_layers(), 0);

  for (const LlamaModel* m : {&all, &first}) {
    const std::vector<at::Tensor> got = run_steps(*m, c);
    ASSERT_EQ(got.size(), want.size());
    for (size_t s = 0; s < got.size(); ++s) EXPECT_TRUE(at::equal(got[s], want[s])) << s;
  }
}

}  // namespace
}  // namespace taco
