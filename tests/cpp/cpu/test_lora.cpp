// lora_apply against a float64 reference: tokens of several adapter slots interleaved with
// tokens of none, up to three slices (a fused q/k/v projection), strided x and y rows, every
// dtype with same-dtype and float32 adapter weights.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <string>
#include <tuple>
#include <vector>

#include "ops/ops.h"

namespace taco {
namespace {

// y[t] + (x[t] A_s^T) B_s^T per slice, in float64.
at::Tensor reference(const at::Tensor& y, const at::Tensor& x, const at::Tensor& a,
                     const at::Tensor& b, const std::vector<int32_t>& slots,
                     const std::vector<int64_t>& starts) {
  at::Tensor out = y.to(at::kDouble).clone();
  const int64_t rank = b.size(1);
  for (size_t t = 0; t < slots.size(); ++t) {
    if (slots[t] < 0) continue;
    const at::Tensor xt = x[t].to(at::kDouble);
    for (size_t s = 0; s + 1 < starts.size(); ++s) {
      const at::Tensor as = a[slots[t]].narrow(1, s * rank, rank).t().to(at::kDouble);  // [R, in]
      const at::Tensor bs =
          b[slots[t]].narrow(1, starts[s], starts[s + 1] - starts[s]).to(at::kDouble);  // [R, n]
      out[t].narrow(0, starts[s], starts[s + 1] - starts[s]) += at::matmul(at::matmul(as, xt), bs);
    }
  }
  return out;
}

using Case = std::tuple<at::ScalarType, bool>;  // model dtype, float32 adapter weights

class LoraApply : public ::testing::TestWithParam<Case> {};

TEST_P(LoraApply, MatchesTheReferenceOverMixedSlots) {
  const auto [dtype, float_weights] = GetParam();
  const at::ScalarType wtype = float_weights ? at::kFloat : dtype;
  at::manual_seed(7);
  const int64_t T = 37, in = 72, rank = 8, slots = 3;
  const std::vector<int64_t> starts = {0, 48, 64, 80};  // q, k, v
  const int64_t out = starts.back();
  const at::Tensor xbuf = at::randn({T, in + 8}).to(dtype);
  const at::Tensor x = xbuf.narrow(1, 4, in);
  at::Tensor ybuf = at::randn({T, out + 5}).to(dtype);
  at::Tensor y = ybuf.narrow(1, 0, out);
  const at::Tensor a = (at::randn({slots, in, 3 * rank}) * 0.2).to(wtype);
  const at::Tensor b = (at::randn({slots, rank, out}) * 0.2).to(wtype);
  std::vector<int32_t> token_slot(T);
  for (int64_t t = 0; t < T; ++t) token_slot[t] = static_cast<int32_t>(t * 7 % (slots + 1)) - 1;
  const at::Tensor ts = at::tensor(token_slot, at::kInt);
  const at::Tensor untouched = ybuf.narrow(1, out, 5).clone();
  const at::Tensor ref = reference(y, x, a, b, token_slot, starts);

  ops::lora_apply(y, x, a, b, ts, starts);

  const double tol = dtype == at::kFloat ? 1e-4 : (dtype == at::kHalf ? 1e-2 : 6e-2);
  const at::Tensor got = y.to(at::kDouble);
  EXPECT_TRUE(at::allclose(got, ref, tol, tol))
      << "max abs error " << (got - ref).abs().max().item<double>();
  EXPECT_TRUE(at::equal(ybuf.narrow(1, out, 5), untouched)) << "wrote past the row";
  for (int64_t t = 0; t < T; ++t) {
    if (token_slot[t] < 0) {
      EXPECT_TRUE(at::equal(got[t], ref[t])) << "token " << t << " has no adapter";
    }
  }
}

TEST_P(LoraApply, BadShapesAndSlotsThrow) {
  const auto [dtype, float_weights] = GetParam();
  const at::ScalarType wtype = float_weights ? at::kFloat : dtype;
  at::Tensor x = at::randn({4, 16}).to(dtype), y = at::zeros({4, 8}, dtype);
  const at::Tensor a = at::zeros({2, 16, 4}, wtype), b = at::zeros({2, 4, 8}, wtype);
  const at::Tensor ok = at::tensor(std::vector<int32_t>{0, 1, -1, 0}, at::kInt);
  EXPECT_NO_THROW(ops::lora_apply(y, x, a, b, ok, {0, 8}));
  const at::Tensor far = at::tensor(std::vector<int32_t>{0, 2, -1, 0}, at::kInt);
  EXPECT_ANY_THROW(ops::lora_apply(y, x, a, b, far, {0, 8}));
  EXPECT_ANY_THROW(ops::lora_apply(y, x, a, b, ok, {0, 4, 8}));  // a has one slice's rows
  EXPECT_ANY_THROW(ops::lora_apply(y, x, a, b, ok, {0, 6}));     // slices end at 6, not out
  EXPECT_ANY_THROW(ops::lora_apply(y, x, a, b, ok.narrow(0, 0, 3), {0, 8}));
}

INSTANTIATE_TEST_SUITE_P(Kernels, LoraApply,
                         ::testing::Combine(::testing::Values(at::kFloat, at::kBFloat16, at::kHalf),
                                            ::testing::Bool()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(c10::toString(std::get<0>(info.param))) +
                                  (std::get<1>(info.param) ? "_float32_weights" : "");
                         });

}  // namespace
}  // namespace taco
