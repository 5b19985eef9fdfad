// rms_norm and fused_add_rms_norm against transformers' LlamaRMSNorm semantics: statistics in
// float32, the normalized value rounded to the model dtype, then multiplied by the weight in the
// model dtype; the fused residual is residual + x rounded to the dtype. Inputs are strided views
// (row stride > hidden) so the kernels must honour the row stride.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <exception>
#include <string>

#include "ops/ops.h"

namespace taco {
namespace {

constexpr int64_t kTokens = 37, kHidden = 200;  // 200 = 12 * 16 + 8: exercises vector tails
constexpr int64_t kPad = 11;
constexpr double kEps = 1e-5;

// The HF reference, computed by ATen in the model dtype exactly as transformers does.
at::Tensor hf_rms_norm(const at::Tensor& x, const at::Tensor& weight) {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor var = xf.pow(2).mean(-1, true);
  return weight * (xf * at::rsqrt(var + kEps)).to(x.scalar_type());
}

// A [kTokens, kHidden] view at column offset 3 of a wider buffer.
at::Tensor strided_rows(const at::Tensor& buffer) { return buffer.narrow(1, 3, kHidden); }

at::Tensor random_buffer(at::ScalarType dtype, double scale) {
  return (at::randn({kTokens, kHidden + kPad}) * scale).to(dtype);
}

// Close in value, and bit-identical on nearly every element: a kernel that skipped the
// intermediate rounding would differ on a large fraction of bf16/fp16 elements.
void expect_hf_equal(const at::Tensor& got, const at::Tensor& ref) {
  const bool is_float = got.scalar_type() == at::kFloat;
  const double tol = is_float ? 1e-5 : (got.scalar_type() == at::kHalf ? 2e-3 : 1.6e-2);
  at::Tensor g = got.to(at::kDouble), r = ref.to(at::kDouble);
  EXPECT_EQ(g.isnan().sum().item<int64_t>(), 0);
  EXPECT_TRUE(at::allclose(g, r, tol, tol))
      << "max abs error " << (g - r).abs().max().item<double>();
  if (!is_float) {
    const double same = g.eq(r).to(at::kDouble).mean().item<double>();
    EXPECT_GT(same, 0.99) << "only " << same << " of elements are bit-identical to HF";
  }
}

class RmsNorm : public ::testing::TestWithParam<at::ScalarType> {};

TEST_P(RmsNorm, MatchesHfOnStridedRows) {
  const at::ScalarType dtype = GetParam();
  at::manual_seed(31);
  at::Tensor x_buf = random_buffer(dtype, 3.0);
  x_buf[5].zero_();  // an all-zero row normalizes to zeros (eps keeps it finite)
  at::Tensor weight = (1.0 + 0.1 * at::randn({kHidden})).to(dtype);
  at::Tensor out_buf = at::full({kTokens, kHidden + kPad}, 7.0, dtype);
  at::Tensor x = strided_rows(x_buf), out = strided_rows(out_buf);
  const at::Tensor x_before = x_buf.clone();

  ops::rms_norm(out, x, weight, kEps);

  expect_hf_equal(out, hf_rms_norm(x, weight));
  EXPECT_TRUE(at::equal(x_buf, x_before)) << "input changed";
  EXPECT_TRUE(out_buf.narrow(1, 0, 3).eq(7.0).all().item<bool>()) << "wrote before the rows";
  EXPECT_TRUE(out_buf.narrow(1, 3 + kHidden, kPad - 3).eq(7.0).all().item<bool>())
      << "wrote past the rows";
}

TEST_P(RmsNorm, FusedAddMatchesHfOnStridedRows) {
  const at::ScalarType dtype = GetParam();
  at::manual_seed(32);
  at::Tensor x_buf = random_buffer(dtype, 1.0);
  at::Tensor residual = (at::randn({kTokens, kHidden}) * 4.0).to(dtype);
  at::Tensor weight = (1.0 + 0.1 * at::randn({kHidden})).to(dtype);
  at::Tensor x = strided_rows(x_buf);
  const at::Tensor x_buf_before = x_buf.clone();
  const at::Tensor residual_ref = residual + x;  // rounded to the dtype by ATen, as in HF
  const at::Tensor x_ref = hf_rms_norm(residual_ref, weight);

  ops::fused_add_rms_norm(x, residual, weight, kEps);

  EXPECT_TRUE(at::equal(residual, residual_ref)) << "residual is not residual + x in the dtype";
  expect_hf_equal(x, x_ref);
  EXPECT_TRUE(at::equal(x_buf.narrow(1, 0, 3), x_buf_before.narrow(1, 0, 3)));
  EXPECT_TRUE(at::equal(x_buf.narrow(1, 3 + kHidden, kPad - 3),
                        x_buf_before.narrow(1, 3 + kHidden, kPad - 3)));
}

TEST_P(RmsNorm, MismatchedWeightThrows) {
  const at::ScalarType dtype = GetParam();
  at::Tensor x = at::randn({2, kHidden}).to(dtype);
  at::Tensor out = at::empty_like(x);
  at::Tensor short_weight = at::ones({kHidden - 1}, dtype);
  EXPECT_ANY_THROW(ops::rms_norm(out, x, short_weight, kEps));
  at::Tensor residual = at::randn({2, kHidden}).to(dtype);
  EXPECT_ANY_THROW(ops::fused_add_rms_norm(x, residual, short_weight, kEps));
}

// A weight view with stride 2 must be either rejected or read through its stride; the kernels
// take a raw pointer, so the adapter has to insist on a contiguous weight.
TEST_P(RmsNorm, NonContiguousWeightIsRejectedOrHonoured) {
  const at::ScalarType dtype = GetParam();
  at::manual_seed(33);
  const at::Tensor weight =
      (1.0 + 0.1 * at::randn({2 * kHidden})).to(dtype).slice(0, 0, 2 * kHidden, 2);
  ASSERT_FALSE(weight.is_contiguous());
  at::Tensor x = at::randn({4, kHidden}).to(dtype);
  at::Tensor out = at::empty_like(x);
  try {
    ops::rms_norm(out, x, weight, kEps);
    expect_hf_equal(out, hf_rms_norm(x, weight));
  } catch (const std::exception&) {
  }
  at::Tensor residual = at::randn({4, kHidden}).to(dtype);
  const at::Tensor x_ref = hf_rms_norm(residual + x, weight);
  try {
    ops::fused_add_rms_norm(x, residual, weight, kEps);
    expect_hf_equal(x, x_ref);
  } catch (const std::exception&) {
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, RmsNorm, ::testing::Values(at::kFloat, at::kBFloat16, at::kHalf),
                         [](const ::testing::TestParamInfo<at::ScalarType>& info) {
                           return std::string(c10::toString(info.param));
                         });

}  // namespace
}  // namespace taco
