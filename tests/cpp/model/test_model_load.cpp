#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "model/layers.h"
#include "model/llama.h"
#include "model/model_config.h"
#include "model/safetensors.h"

namespace taco {
namespace {

namespace fs = std::filesystem;

// Expected values printed by transformers 5.24's ROPE_INIT_FUNCTIONS for head_dim 16.
TEST(Rope, Llama3InvFreqIsBitIdenticalToHf) {
  RopeConfig r;
  r.type = "llama3";
  r.theta = 10000.0;
  r.factor = 8.0;
  r.low_freq_factor = 1.0;
  r.high_freq_factor = 4.0;
  r.original_max_position_embeddings = 64;
  const float want[] = {0x1.0p+0f,       0x1.f47fe8p-3f, 0x1.ab5e6p-7f,   0x1.030dc6p-8f,
                        0x1.47ae14p-10f, 0x1.9e7c7p-12f, 0x1.0624dep-13f, 0x1.4b96cp-15f};
  at::Tensor got = rope_inv_freq(r, 16);
  ASSERT_EQ(got.numel(), 8);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(got[i].item<float>(), want[i]) << i;
}

TEST(Rope, LinearInvFreqIsBitIdenticalToHf) {
  RopeConfig r;
  r.type = "linear";
  r.theta = 500000.0;
  r.factor = 4.0;
  const float want[] = {0x1.0p-2f,       0x1.8d276p-5f,  0x1.34119p-7f,   0x1.ddee9ep-10f,
                        0x1.72ba42p-12f, 0x1.1f91fp-14f, 0x1.be2188p-17f, 0x1.5a0f4ep-19f};
  at::Tensor got = rope_inv_freq(r, 16);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(got[i].item<float>(), want[i]) << i;
}

TEST(Rope, CacheHoldsCosThenSin) {
  RopeConfig r;
  at::Tensor cache = build_rope_cache(r, 8, 10);
  ASSERT_EQ(cache.sizes(), at::IntArrayRef({10, 8}));
  at::Tensor inv = rope_inv_freq(r, 8);
  EXPECT_TRUE(at::equal(cache[3].narrow(0, 0, 4), (inv * 3.0f).cos()));
  EXPECT_TRUE(at::equal(cache[3].narrow(0, 4, 4), (inv * 3.0f).sin()));
}

// A checkpoint whose tensors disagree with config.json fails naming the tensor.
TEST(ModelLoad, WrongShapeOrMissingTensorIsNamed) {
  fs::path dir = fs::temp_directory_path() / "taco_test_model_load";
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << R"({"architectures": ["LlamaForCausalLM"],
      "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
      "num_attention_heads": 2, "vocab_size": 10, "tie_word_embeddings": true})";
  // Only the embedding, with a wrong shape [10, 4].
  std::string header =
      R"({"model.embed_tokens.weight": {"dtype": "F32", "shape": [10, 4], "data_offsets": [0, 160]}})";
  uint64_t n = header.size();
  std::string file(8, '\0');
  std::memcpy(file.data(), &n, 8);
  std::ofstream(dir / "model.safetensors", std::ios::binary)
      << file + header + std::string(160, '\0');
  ModelConfig c = load_model_config(dir.string());
  WeightStore w = WeightStore::open_dir(dir.string());
  try {
    LlamaModel m(c, w, at::kFloat, 16);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("model.embed_tokens.weight"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("[10, 4]"), std::string::npos);
  }
  c.hidden_size = 4;
  c.head_dim = 2;
  try {
    LlamaModel m(c, w, at::kFloat, 16);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("model.norm.weight"), std::string::npos);
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace taco
