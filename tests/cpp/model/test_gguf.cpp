#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "model/gguf.h"
#include "model/gguf_checkpoint.h"

namespace taco {
namespace {

namespace fs = std::filesystem;

// Writes GGUF the way llama.cpp's writer does: header, key/values, tensor infos, then the data
// at the next multiple of the alignment, each tensor aligned.
class Writer {
 public:
  template <typename T>
  void put(T v) {
    head_.append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    head_ += s;
  }
  void kv_u32(const std::string& k, uint32_t v) {
    str(k);
    put<uint32_t>(4);
    put<uint32_t>(v);
    ++kv_;
  }
  void kv_f32(const std::string& k, float v) {
    str(k);
    put<uint32_t>(6);
    put<float>(v);
    ++kv_;
  }
  void kv_str(const std::string& k, const std::string& v) {
    str(k);
    put<uint32_t>(8);
    str(v);
    ++kv_;
  }
  void kv_str_array(const std::string& k, const std::vector<std::string>& v) {
    str(k);
    put<uint32_t>(9);
    put<uint32_t>(8);
    put<uint64_t>(v.size());
    for (const std::string& s : v) str(s);
    ++kv_;
  }
  // dims innermost first, as GGUF stores them.
  void tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type,
              const std::string& bytes) {
    infos_.push_back({name, ne, type, data_.size()});
    data_ += bytes;
    while (data_.size() % 32) data_ += '\0';
  }
  std::string bytes() {
    std::string out;
    auto p32 = [&](uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
    auto p64 = [&](uint64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); };
    p32(0x46554747);
    p32(3);
    p64(infos_.size());
    p64(kv_);
    out += head_;
    for (const Info& i : infos_) {
      p64(i.name.size());
      out += i.name;
      p32(static_cast<uint32_t>(i.ne.size()));
      for (uint64_t d : i.ne) p64(d);
      p32(i.type);
      p64(i.offset);
    }
    while (out.size() % 32) out += '\0';
    return out + data_;
  }

 private:
  struct Info {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    uint64_t offset;
  };
  std::string head_, data_;
  uint64_t kv_ = 0;
  std::vector<Info> infos_;
};

std::string f32_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

// One Q8_0 block: d = 1 (fp16 0x3c00), q = 0..31.
std::string q8_block() {
  std::string b("\x00\x3c", 2);
  for (int i = 0; i < 32; ++i) b += static_cast<char>(i);
  return b;
}

// A two-layer Llama with hidden 64, 4 heads of 16, 2 KV heads, FFN 32, vocab 8: norms in F32,
// token_embd Q8_0 (tied), the rest Q8_0 too.
std::string tiny_llama() {
  Writer w;
  w.kv_str("general.architecture", "llama");
  w.kv_u32("llama.block_count", 2);
  w.kv_u32("llama.context_length", 128);
  w.kv_u32("llama.embedding_length", 64);
  w.kv_u32("llama.feed_forward_length", 32);
  w.kv_u32("llama.attention.head_count", 4);
  w.kv_u32("llama.attention.head_count_kv", 2);
  w.kv_f32("llama.rope.freq_base", 10000.0f);
  w.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.kv_u32("tokenizer.ggml.eos_token_id", 2);
  w.kv_str_array("tokenizer.ggml.tokens", {"a", "b", "c", "d", "e", "f", "g", "h"});
  auto q8 = [](uint64_t rows, uint64_t cols) {
    std::string s;
    for (uint64_t i = 0; i < rows * cols / 32; ++i) s += q8_block();
    return s;
  };
  w.tensor("token_embd.weight", {64, 8}, 8, q8(8, 64));
  w.tensor("output_norm.weight", {64}, 0, f32_bytes(std::vector<float>(64, 1.0f)));
  for (int l = 0; l < 2; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    w.tensor(p + "attn_norm.weight", {64}, 0, f32_bytes(std::vector<float>(64, 1.0f)));
    w.tensor(p + "ffn_norm.weight", {64}, 0, f32_bytes(std::vector<float>(64, 1.0f)));
    w.tensor(p + "attn_q.weight", {64, 64}, 8, q8(64, 64));
    w.tensor(p + "attn_k.weight", {64, 32}, 8, q8(32, 64));
    w.tensor(p + "attn_v.weight", {64, 32}, 8, q8(32, 64));
    w.tensor(p + "attn_output.weight", {64, 64}, 8, q8(64, 64));
    w.tensor(p + "ffn_gate.weight", {64, 32}, 8, q8(32, 64));
    w.tensor(p + "ffn_up.weight", {64, 32}, 8, q8(32, 64));
    w.tensor(p + "ffn_down.weight", {32, 64}, 8, q8(64, 32));
  }
  return w.bytes();
}

class GgufTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("taco_test_gguf_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string put(const std::string& name, const std::string& bytes) {
    std::ofstream(dir_ / name, std::ios::binary) << bytes;
    return (dir_ / name).string();
  }
  fs::path dir_;
};

TEST_F(GgufTest, ReadsMetadataAndTensors) {
  const std::string path = put("m.gguf", tiny_llama());
  EXPECT_TRUE(is_gguf_file(path));
  EXPECT_FALSE(is_gguf_file(dir_.string()));
  GgufFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture", ""), "llama");
  EXPECT_EQ(f.get_int("llama.block_count", 0), 2);
  EXPECT_FLOAT_EQ(f.get_float("llama.attention.layer_norm_rms_epsilon", 0), 1e-5f);
  EXPECT_EQ(f.find("tokenizer.ggml.tokens")->strings.size(), 8u);
  EXPECT_THROW(f.get_int("general.architecture", 0), std::invalid_argument);
  const GgufTensor* t = f.tensor("blk.1.ffn_down.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(t->bytes, 64u * 34);
  EXPECT_EQ(f.data(*t)[0], 0x00);
  EXPECT_EQ(f.data(*t)[1], 0x3c);

  const ModelConfig c = gguf_model_config(f);
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.vocab_size, 8);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>{2});
}

// llama.cpp's converter interleaves the two rotary halves of each q/k head; the checkpoint puts
// HF's order back: HF row h D + j D/2 + i is file row h D + 2 i + j.
TEST_F(GgufTest, QkRowsBackInHfOrder) {
  auto f = std::make_shared<const GgufFile>(put("m.gguf", tiny_llama()));
  GgufCheckpoint ck(f, gguf_model_config(*f));
  EXPECT_EQ(ck.shape("model.layers.0.self_attn.k_proj.weight"), (std::vector<int64_t>{32, 64}));
  at::Tensor k = ck.load("model.layers.0.self_attn.k_proj.weight", at::kFloat);
  at::Tensor v = ck.load("model.layers.0.self_attn.v_proj.weight", at::kFloat);
  // Every row holds 0..31 twice (d = 1): the reorder moves whole rows and keeps the values.
  EXPECT_TRUE(at::equal(k, v));
  std::optional<ops::QuantizedRows> q = ck.quantized("model.layers.0.self_attn.q_proj.weight");
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q->rows.sizes(), (at::IntArrayRef{64, 2 * 34}));
  EXPECT_FALSE(ck.quantized("model.norm.weight").has_value());
  EXPECT_THROW(ck.shape("lm_head.weight"), std::invalid_argument);
}

TEST_F(GgufTest, RejectsBadFiles) {
  const std::string good = tiny_llama();
  auto bad = [&](std::string bytes) {
    const std::string path = put("bad.gguf", bytes);
    try {
      GgufFile f(path);
      gguf_model_config(f);
      return false;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      return true;
    }
  };
  std::string s = good;
  s[0] = 'X';
  EXPECT_TRUE(bad(s));  // magic
  s = good;
  s[4] = 1;
  EXPECT_TRUE(bad(s));  // version 1
  s = good;
  s[8] = '\xff';  // tensor count
  EXPECT_TRUE(bad(s));
  EXPECT_TRUE(bad(good.substr(0, good.size() - 1)));  // last tensor's data cut
  {
    Writer w;
    w.kv_str("general.architecture", "gpt2");
    w.tensor("token_embd.weight", {32, 2}, 0, f32_bytes(std::vector<float>(64)));
    EXPECT_TRUE(bad(w.bytes()));  // unsupported architecture
  }
  {
    Writer w;
    w.kv_str("general.architecture", "llama");
    w.tensor("x", {48, 1}, 8, std::string(34 * 2, '\0'));  // row length not a block multiple
    EXPECT_TRUE(bad(w.bytes()));
  }
  {
    Writer w;
    w.kv_str("a", "x");
    w.kv_str("a", "y");
    EXPECT_TRUE(bad(w.bytes()));  // duplicate key
  }
}

TEST_F(GgufTest, UnsupportedTensorTypeNamesTensorAndType) {
  Writer w;
  w.kv_str("general.architecture", "llama");
  w.tensor("blk.0.ffn_down.weight", {256, 2}, 11, std::string(2 * 110, '\0'));  // Q3_K
  auto f = std::make_shared<const GgufFile>(put("q3.gguf", w.bytes()));
  ModelConfig c;
  c.num_layers = 1;
  c.num_heads = c.num_kv_heads = 1;
  GgufCheckpoint ck(f, c);
  try {
    ck.load("model.layers.0.mlp.down_proj.weight", at::kFloat);
    FAIL();
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("blk.0.ffn_down.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("Q3_K"), std::string::npos) << msg;
  }
}

TEST_F(GgufTest, EveryTruncationFailsCleanly) {
  const std::string good = tiny_llama();
  // The header and tensor infos end well before the data; cut everywhere up to the first tensor,
  // then at a stride through the data.
  for (size_t len = 0; len < good.size(); len += len < 2048 ? 1 : 61) {
    const std::string path = put("t.gguf", good.substr(0, len));
    EXPECT_THROW(GgufFile f(path), std::invalid_argument) << len;
  }
}

// Random byte flips in the header end in a clean exception or a file whose every tensor reads
// within bounds.
TEST_F(GgufTest, ByteFlipFuzz) {
  const std::string good = tiny_llama();
  const size_t header = GgufFile(put("g.gguf", good)).tensors().front().offset;
  std::mt19937 rng(99);
  int loaded = 0, rejected = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string bad = good;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < flips; ++k) {
      const size_t pos = rng() % header;
      if (rng() % 2) {
        bad[pos] = static_cast<char>(bad[pos] ^ (1u << (rng() % 8)));
      } else {
        bad[pos] = static_cast<char>(rng() % 256);
      }
    }
    const std::string path = put("f.gguf", bad);
    try {
      auto f = std::make_shared<const GgufFile>(path);
      for (const GgufTensor& t : f->tensors()) {
        if (!ggml_type(t.type)) continue;
        const uint8_t* p = f->data(t);
        unsigned sum = 0;
        for (size_t i = 0; i < t.bytes; ++i) sum += p[i];
        (void)sum;
      }
      try {
        ModelConfig c = gguf_model_config(*f);
        GgufCheckpoint ck(f, c);
        (void)ck.load("model.layers.0.self_attn.q_proj.weight", at::kFloat).sum().item<float>();
      } catch (const std::invalid_argument&) {
      }
      ++loaded;
    } catch (const std::invalid_argument&) {
      ++rejected;
    }
  }
  EXPECT_EQ(loaded + rejected, 3000);
  EXPECT_GT(rejected, 500);
}

}  // namespace
}  // namespace taco
