// ops::linear's few-row bf16 path (cpu::skinny_gemm) against a float64 reference of the same
// bf16 operands: only the summation order differs, so results agree to bf16 rounding.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "ops/ops.h"

namespace taco {
namespace {

// n = 4 * 9 + 3: full four-row tiles and a tail; k = 96 = 3 steps of 32.
constexpr int64_t kN = 39, kK = 96;

void expect_close(const at::Tensor& got, const at::Tensor& x, const at::Tensor& w, double tol) {
  const at::Tensor ref = at::matmul(x.to(at::kDouble), w.to(at::kDouble).t());
  const at::Tensor g = got.to(at::kDouble);
  EXPECT_TRUE(at::allclose(g, ref, tol, tol))
      << "max abs error " << (g - ref).abs().max().item<double>();
}

TEST(SkinnyGemm, MatchesReferenceForEveryRowCount) {
  at::manual_seed(5);
  const at::Tensor w = at::randn({kN, kK}).to(at::kBFloat16);
  for (int64_t m = 1; m <= ops::kSkinnyRows; ++m) {
    // A strided x (a column slice of a wider buffer), as the fused projections produce.
    const at::Tensor x = at::randn({m, kK + 32}).to(at::kBFloat16).narrow(1, 32, kK);
    const at::Tensor y = ops::linear(x, w, at::Tensor());
    ASSERT_EQ(y.scalar_type(), at::kBFloat16);
    ASSERT_EQ(y.sizes(), (at::IntArrayRef{m, kN}));
    expect_close(y, x, w, 4e-2);
    const at::Tensor logits = ops::linear(x, w, at::Tensor(), /*float_out=*/true);
    ASSERT_EQ(logits.scalar_type(), at::kFloat);
    expect_close(logits, x, w, 1e-4);
  }
}

TEST(SkinnyGemm, OtherShapesAndDtypesFallBackToAten) {
  at::manual_seed(6);
  const at::Tensor w = at::randn({kN, 40});  // k % 32 != 0, and float32
  const at::Tensor x = at::randn({2, 40});
  EXPECT_TRUE(at::equal(ops::linear(x, w, at::Tensor()), at::linear(x, w)));
  const at::Tensor wb = w.to(at::kBFloat16), xb = x.to(at::kBFloat16);
  EXPECT_TRUE(at::equal(ops::linear(xb, wb, at::Tensor()), at::linear(xb, wb)));
  const at::Tensor bias = at::randn({kN});
  EXPECT_TRUE(at::equal(ops::linear(x, w, bias), at::linear(x, w, bias)));
}

}  // namespace
}  // namespace taco
