// taco::ops::rotary_embedding (neox and GPT-J pairing, full and partial rot_dim) against a
// float64 reference, on query/key views whose row stride exceeds their row (as when they are
// slices of a packed qkv projection). Features past rot_dim and the bytes around the views must
// stay untouched.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <string>
#include <vector>

#include "ops/ops.h"

namespace taco {
namespace {

constexpr int64_t kTokens = 23, kHeads = 4, kKvHeads = 2, kHeadDim = 32, kMaxPos = 128;

// [max_pos, rot_dim] float32: cos of pos * theta^(-2i/rot_dim) in the first half, sin after.
at::Tensor cos_sin_cache(int64_t rot_dim) {
  at::Tensor inv_freq =
      at::pow(10000.0, -at::arange(0, rot_dim, 2, at::kDouble) / static_cast<double>(rot_dim));
  at::Tensor freqs = at::outer(at::arange(kMaxPos, at::kDouble), inv_freq);
  return at::cat({freqs.cos(), freqs.sin()}, 1).to(at::kFloat).contiguous();
}

// x [T, heads * D] -> rotated copy in float64.
at::Tensor reference(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& cache,
                     bool is_neox) {
  const int64_t rot = cache.size(1), half = rot / 2;
  at::Tensor in = x.to(at::kDouble).reshape({x.size(0), -1, kHeadDim});
  at::Tensor cs = cache.index_select(0, positions).to(at::kDouble).unsqueeze(1);  // [T, 1, rot]
  at::Tensor cos = cs.narrow(2, 0, half), sin = cs.narrow(2, half, half);
  at::Tensor x1 = is_neox ? in.narrow(2, 0, half) : in.slice(2, 0, rot, 2);
  at::Tensor x2 = is_neox ? in.narrow(2, half, half) : in.slice(2, 1, rot, 2);
  at::Tensor out = in.clone();
  (is_neox ? out.narrow(2, 0, half) : out.slice(2, 0, rot, 2)).copy_(x1 * cos - x2 * sin);
  (is_neox ? out.narrow(2, half, half) : out.slice(2, 1, rot, 2)).copy_(x2 * cos + x1 * sin);
  return out.reshape({x.size(0), -1});
}

std::pair<double, double> tolerance(at::ScalarType dtype) {
  if (dtype == at::kFloat) return {1e-5, 1e-5};
  if (dtype == at::kHalf) return {4e-3, 4e-3};
  return {3e-2, 2e-2};
}

// Columns [rot_dim, head_dim) of every head of x [T, heads * D].
at::Tensor tail(const at::Tensor& x, int64_t rot_dim) {
  return x.reshape({x.size(0), -1, kHeadDim}).narrow(2, rot_dim, kHeadDim - rot_dim);
}

// One rotary call on query/key views with distinct row strides, checked against the reference.
void check_strided_views(at::ScalarType dtype, bool is_neox, int64_t rot_dim) {
  // query from a packed qkv row, key from a wider buffer with an odd pad.
  at::Tensor qkv = at::randn({kTokens, (kHeads + 2 * kKvHeads) * kHeadDim}).to(dtype);
  at::Tensor kbuf = at::randn({kTokens, kKvHeads * kHeadDim + 5}).to(dtype);
  at::Tensor query = qkv.narrow(1, 0, kHeads * kHeadDim);
  at::Tensor key = kbuf.narrow(1, 0, kKvHeads * kHeadDim);
  const at::Tensor qkv_before = qkv.clone(), kbuf_before = kbuf.clone();
  at::Tensor positions = at::randint(kMaxPos, {kTokens}, at::kLong);
  positions[0] = 0;
  positions[1] = kMaxPos - 1;
  const at::Tensor cache = cos_sin_cache(rot_dim);
  const at::Tensor q_ref = reference(query, positions, cache, is_neox);
  const at::Tensor k_ref = reference(key, positions, cache, is_neox);

  ops::rotary_embedding(positions, query, key, kHeadDim, cache, is_neox);

  const auto [atol, rtol] = tolerance(dtype);
  EXPECT_TRUE(at::allclose(query.to(at::kDouble), q_ref, rtol, atol))
      << "query max abs error " << (query.to(at::kDouble) - q_ref).abs().max().item<double>();
  EXPECT_TRUE(at::allclose(key.to(at::kDouble), k_ref, rtol, atol))
      << "key max abs error " << (key.to(at::kDouble) - k_ref).abs().max().item<double>();
  const at::Tensor q_before = qkv_before.narrow(1, 0, kHeads * kHeadDim);
  const at::Tensor k_before = kbuf_before.narrow(1, 0, kKvHeads * kHeadDim);
  EXPECT_TRUE(at::equal(tail(query, rot_dim), tail(q_before, rot_dim)));
  EXPECT_TRUE(at::equal(tail(key, rot_dim), tail(k_before, rot_dim)));
  EXPECT_TRUE(at::equal(qkv.narrow(1, kHeads * kHeadDim, 2 * kKvHeads * kHeadDim),
                        qkv_before.narrow(1, kHeads * kHeadDim, 2 * kKvHeads * kHeadDim)))
      << "k/v columns of qkv changed";
  EXPECT_TRUE(at::equal(kbuf.narrow(1, kKvHeads * kHeadDim, 5),
                        kbuf_before.narrow(1, kKvHeads * kHeadDim, 5)))
      << "padding past key rows changed";
}

class RotaryEmbedding : public ::testing::TestWithParam<at::ScalarType> {};

// neox and GPT-J pairing, each with full and partial (rot_dim = head_dim / 2) rotation.
TEST_P(RotaryEmbedding, MatchesReferenceOnStridedViews) {
  at::manual_seed(21);
  for (const bool is_neox : {true, false}) {
    for (const int64_t rot_dim : {kHeadDim, kHeadDim / 2}) {
      SCOPED_TRACE(std::string(is_neox ? "neox" : "gptj") + ", rot_dim " + std::to_string(rot_dim));
      check_strided_views(GetParam(), is_neox, rot_dim);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, RotaryEmbedding,
                         ::testing::Values(at::kFloat, at::kBFloat16, at::kHalf),
                         [](const ::testing::TestParamInfo<at::ScalarType>& info) {
                           return std::string(c10::toString(info.param));
                         });

TEST(RotaryEmbeddingErrors, PositionOutsideTheCacheThrows) {
  at::Tensor query = at::randn({2, kHeads * kHeadDim});
  at::Tensor key = at::randn({2, kKvHeads * kHeadDim});
  at::Tensor positions = at::tensor(std::vector<int64_t>{3, kMaxPos}, at::kLong);
  const at::Tensor cache = cos_sin_cache(kHeadDim);
  EXPECT_ANY_THROW(ops::rotary_embedding(positions, query, key, kHeadDim, cache, true));
  positions[1] = -1;
  EXPECT_ANY_THROW(ops::rotary_embedding(positions, query, key, kHeadDim, cache, true));
}

}  // namespace
}  // namespace taco
