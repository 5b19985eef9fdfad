// apply_token_bitmask() against the rule it implements: a listed row's logit t is -inf where bit
// t % 32 of word t / 32 is clear, unchanged where it is set; unlisted rows, ids past vocab and the
// padding between rows are untouched.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "cuda_test_util.h"
#include "taco/cuda/sampling.h"

namespace taco::cuda::testing {
namespace {

TEST(TokenBitmask, MasksExactlyTheClearedBitsOfListedRows) {
  TACO_REQUIRE_GPU();
  std::mt19937 rng(7);
  const int64_t vocab = 1000, stride = 1040;  // vocab not a multiple of 32; padded rows
  const int32_t total_rows = 5, words = (vocab + 31) / 32 + 1;
  const std::vector<int32_t> listed = {3, 0, 4};
  std::vector<float> logits = random_vector<float>(total_rows * stride, rng);
  std::vector<int32_t> bits(listed.size() * words);
  std::uniform_int_distribution<uint32_t> word_dist;
  for (auto& w : bits) w = static_cast<int32_t>(word_dist(rng));
  bits[0] = -1;  // a word with every id allowed
  bits[1] = 0;   // and one with none
  DeviceBuffer<float> d_logits(logits);
  DeviceBuffer<int32_t> d_bits(bits);
  DeviceBuffer<int32_t> d_rows(listed);
  TokenBitmaskParams p;
  p.logits = d_logits.get();
  p.logits_stride = stride;
  p.vocab = vocab;
  p.bitmask = d_bits.get();
  p.words = words;
  p.rows = d_rows.get();
  p.num_rows = static_cast<int32_t>(listed.size());
  ASSERT_EQ(apply_token_bitmask(p, nullptr), cudaSuccess);
  const std::vector<float> got = d_logits.download();
  std::vector<float> want = logits;
  for (size_t m = 0; m < listed.size(); ++m) {
    for (int64_t t = 0; t < vocab; ++t) {
      const uint32_t w = static_cast<uint32_t>(bits[m * words + t / 32]);
      if (!((w >> (t % 32)) & 1u)) want[listed[m] * stride + t] = -INFINITY;
    }
  }
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << "element " << i;
}

TEST(TokenBitmask, RejectsBadParams) {
  TokenBitmaskParams p;
  p.num_rows = 1;
  p.vocab = 100;
  p.logits_stride = 100;
  p.words = 3;  // below ceil(100 / 32)
  EXPECT_EQ(apply_token_bitmask(p, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace taco::cuda::testing
