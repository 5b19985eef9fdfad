// The host side of the GPU's W4A16 weights: Q4_0, Q4_1 and Q4_Z rows rewritten into the W4A16
// layout (codes, d, m, z) stand for exactly the values the blocks do.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "ops/linear.h"

namespace taco {
namespace {

using kernels::QuantType;

ops::QuantizedRows random_rows(QuantType t, int64_t n, int64_t k) {
  const int64_t bytes = kernels::quant_block_bytes(t);
  at::Tensor rows = at::randint(0, 256, {n, k / 32, bytes}, at::kByte);
  // Finite fp16 scales and offsets; Q4_Z's zero point an integer 0-15.
  rows.slice(2, 0, 2).copy_(
      (at::rand({n, k / 32, 1}) * 0.02 + 0.001).to(at::kHalf).view(at::kByte));
  if (t == QuantType::kQ4_1) {
    rows.slice(2, 2, 4).copy_((at::rand({n, k / 32, 1}) - 0.5).to(at::kHalf).view(at::kByte));
  } else if (t == QuantType::kQ4_Z) {
    rows.slice(2, 2, 4).copy_(at::randint(0, 16, {n, k / 32, 1}).to(at::kHalf).view(at::kByte));
  }
  return {t, rows.view({n, -1}), k, at::Tensor()};
}

TEST(W4A16Layout, HoldsTheBlockValuesExactly) {
  at::manual_seed(3);
  for (const QuantType t : {QuantType::kQ4_0, QuantType::kQ4_1, QuantType::kQ4_Z}) {
    SCOPED_TRACE(kernels::quant_type_name(t));
    const int64_t n = 7, k = 96;
    const ops::QuantizedRows q = random_rows(t, n, k);
    const std::vector<at::Tensor> f = ops::w4a16_layout(q);
    ASSERT_EQ(f[0].sizes(), (std::vector<int64_t>{n, k / 2}));
    // Column 2j: low nibble of byte j, 2j + 1: high nibble.
    const at::Tensor codes =
        at::stack({at::bitwise_and(f[0], 15), at::bitwise_right_shift(f[0], 4)}, 2).view({n, k});
    auto per_column = [&](const at::Tensor& b) {
      return b.to(at::kFloat).repeat_interleave(32, 1);
    };
    const at::Tensor values =
        per_column(f[1]) * (codes.to(at::kFloat) - per_column(f[3])) + per_column(f[2]);
    EXPECT_TRUE(at::equal(values, ops::dequantize_rows(q)));
  }
}

TEST(W4A16Layout, OtherTypesAreRefused) {
  const ops::QuantizedRows q{QuantType::kQ8_0, at::zeros({2, 34}, at::kByte), 32, at::Tensor()};
  EXPECT_ANY_THROW(ops::w4a16_layout(q));
}

}  // namespace
}  // namespace taco
