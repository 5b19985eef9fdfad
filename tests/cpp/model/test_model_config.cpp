#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "model/model_config.h"

namespace taco {
namespace {

namespace fs = std::filesystem;

std::string llama_json(const std::string& extra = "") {
  return R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "vocab_size": 100, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
    "eos_token_id": 2)" +
         extra + "}";
}

fs::path temp_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("taco_test_config_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void write(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

TEST(ModelConfig, LlamaDefaults) {
  ModelConfig c = parse_model_config(llama_json(), "config.json");
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.family, ModelFamily::kLlama);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.rope.type, "default");
  EXPECT_DOUBLE_EQ(c.rope.theta, 10000.0);
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>({2}));
}

TEST(ModelConfig, Transformers5RopeParameters) {
  ModelConfig c = parse_model_config(
      llama_json(R"(, "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"},
                    "tie_word_embeddings": true, "head_dim": 32, "dtype": "float32")"),
      "config.json");
  EXPECT_DOUBLE_EQ(c.rope.theta, 100000.0);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.torch_dtype, "float32");
}

TEST(ModelConfig, Llama3RopeScaling) {
  ModelConfig c = parse_model_config(
      llama_json(R"(, "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3",
         "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
         "original_max_position_embeddings": 64}, "bos_token_id": 1)"),
      "config.json");
  EXPECT_EQ(c.rope.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
  EXPECT_DOUBLE_EQ(c.rope.factor, 8.0);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 64);
}

TEST(ModelConfig, EosListAndNull) {
  std::string j = llama_json();
  j.replace(j.find("\"eos_token_id\": 2"), 17, "\"eos_token_id\": [5, 6]");
  EXPECT_EQ(parse_model_config(j, "c").eos_token_ids, std::vector<int32_t>({5, 6}));
  j.replace(j.find("[5, 6]"), 6, "null");
  EXPECT_TRUE(parse_model_config(j, "c").eos_token_ids.empty());
}

TEST(ModelConfig, Families) {
  auto with_arch = [](const std::string& arch, const std::string& extra = "") {
    std::string j = llama_json(extra);
    j.replace(j.find("LlamaForCausalLM"), 16, arch);
    return parse_model_config(j, "config.json");
  };
  ModelConfig m = with_arch("MistralForCausalLM", R"(, "sliding_window": 4096)");
  EXPECT_EQ(m.family, ModelFamily::kLlama);
  EXPECT_EQ(m.sliding_window, 4096);
  ModelConfig q2 = with_arch("Qwen2ForCausalLM");
  EXPECT_EQ(q2.family, ModelFamily::kQwen2);
  EXPECT_TRUE(q2.qkv_bias);
  EXPECT_FALSE(q2.o_bias);
  ModelConfig q3 = with_arch("Qwen3ForCausalLM", R"(, "head_dim": 32)");
  EXPECT_TRUE(q3.qk_norm);
  EXPECT_FALSE(q3.qkv_bias);
  EXPECT_EQ(q3.head_dim, 32);
  ModelConfig lb = with_arch("LlamaForCausalLM", R"(, "attention_bias": true, "mlp_bias": true)");
  EXPECT_TRUE(lb.qkv_bias && lb.o_bias && lb.mlp_bias);
}

TEST(ModelConfig, RejectsBadConfigs) {
  const std::string cases[] = {
      "not json",
      "[]",
      R"({"architectures": ["GPT2LMHeadModel"], "hidden_size": 64})",
      llama_json(R"(, "num_key_value_heads": 3)"),
      llama_json(R"(, "hidden_size": -64)"),
      llama_json(R"(, "hidden_size": "64")"),
      llama_json(R"(, "rope_scaling": {"rope_type": "yarn", "factor": 4.0})"),
      llama_json(R"(, "rope_scaling": {"rope_type": "llama3", "factor": 8.0})"),
      llama_json(R"(, "hidden_act": "gelu")"),
      llama_json(R"(, "eos_token_id": [-1])"),
      llama_json(R"(, "rms_norm_eps": 0)"),
  };
  for (const std::string& text : cases) {
    EXPECT_THROW(parse_model_config(text, "config.json"), std::invalid_argument) << text;
  }
}

TEST(ModelConfig, UnknownArchitectureListsSupported) {
  try {
    parse_model_config(R"({"architectures": ["FalconForCausalLM"]})", "/m/config.json");
    FAIL();
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("/m/config.json"), std::string::npos);
    EXPECT_NE(msg.find("FalconForCausalLM"), std::string::npos);
    EXPECT_NE(msg.find("Qwen3ForCausalLM"), std::string::npos);
  }
}

TEST(ModelConfig, LoadsDirectoryAndMergesGenerationConfig) {
  fs::path dir = temp_dir("gen");
  write(dir / "config.json", llama_json());
  write(dir / "generation_config.json", R"({"eos_token_id": [2, 7]})");
  ModelConfig c = load_model_config(dir.string());
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>({2, 7}));
  fs::remove_all(dir);
}

TEST(ModelConfig, MissingOrCorruptFileNamesIt) {
  fs::path dir = temp_dir("missing");
  try {
    load_model_config(dir.string());
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos);
  }
  write(dir / "config.json", llama_json().substr(0, 50));
  try {
    load_model_config(dir.string());
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find((dir / "config.json").string()), std::string::npos);
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace taco
