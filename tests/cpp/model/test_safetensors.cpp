#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "model/safetensors.h"

namespace taco {
namespace {

namespace fs = std::filesystem;

struct RawTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

// Serializes tensors the way the safetensors writer does: u64 header length, JSON header
// padded with spaces to 8 bytes, then the data.
std::string serialize(const std::vector<RawTensor>& tensors) {
  std::string header = "{\"__metadata__\": {\"format\": \"pt\"}";
  std::string data;
  for (const RawTensor& t : tensors) {
    header += ", \"" + t.name + "\": {\"dtype\": \"" + t.dtype + "\", \"shape\": [";
    for (size_t i = 0; i < t.shape.size(); ++i)
      header += (i ? ", " : "") + std::to_string(t.shape[i]);
    header += "], \"data_offsets\": [" + std::to_string(data.size()) + ", " +
              std::to_string(data.size() + t.bytes.size()) + "]}";
    data += t.bytes;
  }
  header += "}";
  while (header.size() % 8) header += ' ';
  uint64_t n = header.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

std::string f32_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

std::string bf16_bytes(const std::vector<float>& v) {
  std::string out;
  for (float f : v) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    const uint16_t hi = static_cast<uint16_t>(bits >> 16);  // exact for the values used here
    out.append(reinterpret_cast<const char*>(&hi), 2);
  }
  return out;
}

std::vector<RawTensor> sample_tensors() {
  return {{"a.weight", "F32", {2, 3}, f32_bytes({1, 2, 3, 4, 5, 6})},
          {"b.weight", "BF16", {4}, bf16_bytes({0.5f, -1.0f, 2.0f, 8.0f})},
          {"c.ids", "I64", {1}, std::string(8, '\x01')}};
}

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("taco_test_st_" +
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

TEST_F(SafetensorsTest, LoadsSingleFile) {
  put("model.safetensors", serialize(sample_tensors()));
  WeightStore w = WeightStore::open_dir(dir_.string());
  EXPECT_EQ(w.names(), std::vector<std::string>({"a.weight", "b.weight", "c.ids"}));
  at::Tensor a = w.load("a.weight", at::kFloat);
  EXPECT_EQ(a.sizes(), at::IntArrayRef({2, 3}));
  EXPECT_FLOAT_EQ(a[1][2].item<float>(), 6.0f);
  at::Tensor b = w.load("b.weight", at::kFloat);
  EXPECT_FLOAT_EQ(b[3].item<float>(), 8.0f);
  at::Tensor bv = w.view("b.weight");
  EXPECT_EQ(bv.scalar_type(), at::kBFloat16);
  at::Tensor a16 = w.load("a.weight", at::kBFloat16);
  EXPECT_FLOAT_EQ(a16[0][1].item<float>(), 2.0f);
  EXPECT_THROW(w.load("c.ids", at::kFloat), std::invalid_argument);
  EXPECT_THROW(w.load("missing", at::kFloat), std::invalid_argument);
}

TEST_F(SafetensorsTest, ViewOutlivesStore) {
  put("model.safetensors", serialize(sample_tensors()));
  at::Tensor a;
  {
    WeightStore w = WeightStore::open_dir(dir_.string());
    a = w.view("a.weight");
  }
  EXPECT_FLOAT_EQ(a.sum().item<float>(), 21.0f);
}

TEST_F(SafetensorsTest, LoadsShardedIndex) {
  auto t = sample_tensors();
  put("model-00001-of-00002.safetensors", serialize({t[0]}));
  put("model-00002-of-00002.safetensors", serialize({t[1]}));
  put("model.safetensors.index.json",
      R"({"metadata": {"total_size": 32}, "weight_map": {
           "a.weight": "model-00001-of-00002.safetensors",
           "b.weight": "model-00002-of-00002.safetensors"}})");
  WeightStore w = WeightStore::open_dir(dir_.string());
  EXPECT_TRUE(w.has("a.weight"));
  EXPECT_FLOAT_EQ(w.load("b.weight", at::kFloat)[1].item<float>(), -1.0f);
}

TEST_F(SafetensorsTest, RejectsBadIndex) {
  auto t = sample_tensors();
  put("s1.safetensors", serialize({t[0]}));
  const std::string bad[] = {
      R"({"weight_map": {"a.weight": "../s1.safetensors"}})",
      R"({"weight_map": {"a.weight": "/etc/passwd"}})",
      R"({"weight_map": {"b.weight": "s1.safetensors"}})",
      R"({"weight_map": {"a.weight": "absent.safetensors"}})",
      R"({"weight_map": [1]})",
      R"({"weight_map": {"a.weight": 3}})",
      "{",
  };
  for (const std::string& index : bad) {
    put("model.safetensors.index.json", index);
    try {
      WeightStore::open_dir(dir_.string());
      ADD_FAILURE() << index;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(dir_.string()), std::string::npos) << e.what();
    }
  }
}

TEST_F(SafetensorsTest, MissingCheckpointNamesDirectory) {
  try {
    WeightStore::open_dir(dir_.string());
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(dir_.string()), std::string::npos);
  }
}

TEST_F(SafetensorsTest, RejectsInconsistentEntries) {
  const std::string bad_headers[] = {
      R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}})",
      R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 400]}})",
      R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})",
      R"({"x": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 4]}})",
      R"({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})",
      R"({"x": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 4]}})",
      R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})",
      R"({"x": {"dtype": "F32", "shape": [1]}})",
      R"({"x": 5})",
      R"([1])",
  };
  for (const std::string& h : bad_headers) {
    std::string header = h;
    uint64_t n = header.size();
    std::string file(8, '\0');
    std::memcpy(file.data(), &n, 8);
    const std::string path = put("x.safetensors", file + header + std::string(4, '\0'));
    try {
      SafetensorsFile f(path);
      ADD_FAILURE() << h;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
    }
  }
}

TEST_F(SafetensorsTest, EveryTruncationFailsCleanly) {
  const std::string good = serialize(sample_tensors());
  for (size_t len = 0; len < good.size(); ++len) {
    const std::string path = put("t.safetensors", good.substr(0, len));
    EXPECT_THROW(SafetensorsFile f(path), std::invalid_argument) << len;
  }
}

// Random byte flips (mostly in the length prefix and header, where offsets live) end in a clean
// exception or a store whose every tensor reads within bounds.
TEST_F(SafetensorsTest, ByteFlipFuzz) {
  const std::string good = serialize(sample_tensors());
  uint64_t header_len = 0;
  std::memcpy(&header_len, good.data(), 8);
  std::mt19937 rng(1234);
  int loaded = 0, rejected = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string bad = good;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < flips; ++k) {
      const size_t limit = (rng() % 4 == 0) ? bad.size() : 8 + header_len;
      const size_t pos = rng() % limit;
      if (rng() % 2) {
        bad[pos] = static_cast<char>(bad[pos] ^ (1u << (rng() % 8)));
      } else {
        bad[pos] = "0123456789[]{}\",:-e"[rng() % 19];
      }
    }
    const std::string path = put("f.safetensors", bad);
    try {
      SafetensorsFile f(path);
      WeightStore w = WeightStore::open_files({path});
      for (const std::string& name : w.names()) {
        try {
          at::Tensor t = w.load(name, at::kFloat);
          (void)t.sum().item<float>();
        } catch (const std::invalid_argument&) {
        }
      }
      ++loaded;
    } catch (const std::invalid_argument&) {
      ++rejected;
    }
  }
  EXPECT_EQ(loaded + rejected, 3000);
  EXPECT_GT(rejected, 1000);
}

}  // namespace
}  // namespace taco
