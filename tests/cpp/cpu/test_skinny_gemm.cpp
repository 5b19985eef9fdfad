// ops::linear's packed bf16 paths (cpu::skinny_gemm for few rows, oneDNN's packed weight for
// more) against a float64 reference of the same bf16 operands: only the summation order
// differs, so results agree to bf16 rounding.
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
  const ops::LinearWeight packed = ops::prepare_linear_weight(w);
  if (!packed.skinny.defined()) GTEST_SKIP() << "no AVX512-BF16 on this CPU: nothing is packed";
  EXPECT_FALSE(packed.plain.defined() && packed.onednn.defined());  // no third copy
  for (int64_t m = 1; m <= ops::kSkinnyRows + 5; ++m) {
    // A strided x (a column slice of a wider buffer), as the fused projections produce.
    const at::Tensor x = at::randn({m, kK + 32}).to(at::kBFloat16).narrow(1, 32, kK);
    const at::Tensor y = ops::linear(x, packed, at::Tensor());
    ASSERT_EQ(y.scalar_type(), at::kBFloat16);
    ASSERT_EQ(y.sizes(), (at::IntArrayRef{m, kN}));
    expect_close(y, x, w, 4e-2);
    const at::Tensor logits = ops::linear(x, packed, at::Tensor(), /*float_out=*/true);
    ASSERT_EQ(logits.scalar_type(), at::kFloat);
    expect_close(logits, x, w, m <= ops::kSkinnyRows ? 1e-4 : 4e-2);  // oneDNN rounds to bf16
  }
  // A bias goes to oneDNN whatever the row count.
  const at::Tensor x = at::randn({2, kK}).to(at::kBFloat16);
  const at::Tensor bias = at::randn({kN}).to(at::kBFloat16);
  const at::Tensor ref =
      at::matmul(x.to(at::kDouble), w.to(at::kDouble).t()) + bias.to(at::kDouble);
  const at::Tensor got = ops::linear(x, packed, bias).to(at::kDouble);
  EXPECT_TRUE(at::allclose(got, ref, 4e-2, 4e-2)) << "max abs error " << (got - ref).abs().max();
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
