// silu_and_mul against transformers' MLP semantics: act(gate) rounded to the model dtype, then
// multiplied by up in the dtype. The input is a strided view (row stride > 2 * inter).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <string>

#include "ops/ops.h"

namespace taco {
namespace {

constexpr int64_t kTokens = 19, kInter = 88;  // 88 = 5 * 16 + 8: exercises vector tails

class SiluAndMul : public ::testing::TestWithParam<at::ScalarType> {};

TEST_P(SiluAndMul, MatchesHfOnStridedRows) {
  const at::ScalarType dtype = GetParam();
  at::manual_seed(41);
  at::Tensor buffer = (at::randn({kTokens, 2 * kInter + 6}) * 3.0).to(dtype);
  at::Tensor x = buffer.narrow(1, 2, 2 * kInter);
  at::Tensor out = at::full({kTokens, kInter}, 5.0, dtype);
  const at::Tensor ref = at::silu(x.narrow(1, 0, kInter)) * x.narrow(1, kInter, kInter);

  ops::silu_and_mul(out, x);

  const bool is_float = dtype == at::kFloat;
  const double tol = is_float ? 1e-5 : (dtype == at::kHalf ? 2e-3 : 1.6e-2);
  at::Tensor g = out.to(at::kDouble), r = ref.to(at::kDouble);
  EXPECT_EQ(g.isnan().sum().item<int64_t>(), 0);
  EXPECT_TRUE(at::allclose(g, r, tol, tol))
      << "max abs error " << (g - r).abs().max().item<double>();
  if (!is_float) {
    const double same = g.eq(r).to(at::kDouble).mean().item<double>();
    EXPECT_GT(same, 0.98) << "only " << same << " of elements are bit-identical to HF";
  }
}

TEST_P(SiluAndMul, BadShapesThrow) {
  const at::ScalarType dtype = GetParam();
  at::Tensor x = at::randn({3, 2 * kInter}).to(dtype);
  at::Tensor wrong_width = at::empty({3, kInter + 1}, dtype);
  EXPECT_ANY_THROW(ops::silu_and_mul(wrong_width, x));
  at::Tensor odd = at::randn({3, 2 * kInter + 1}).to(dtype);
  at::Tensor out = at::empty({3, kInter}, dtype);
  EXPECT_ANY_THROW(ops::silu_and_mul(out, odd));
}

INSTANTIATE_TEST_SUITE_P(Kernels, SiluAndMul,
                         ::testing::Values(at::kFloat, at::kBFloat16, at::kHalf),
                         [](const ::testing::TestParamInfo<at::ScalarType>& info) {
                           return std::string(c10::toString(info.param));
                         });

}  // namespace
}  // namespace taco
