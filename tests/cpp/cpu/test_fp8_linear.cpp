// cpu::fp8_linear against a double-precision reference over the E4M3 values times the row scales;
// the E4M3 decoding against torch's float8_e4m3fn; unpacking against the same values.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "cpu/fp8_linear.h"
#include "cpu/half.h"

namespace taco {
namespace {

using kernels::DType;

TEST(Fp8, DecodingMatchesTorch) {
  const at::Tensor codes = at::arange(256, at::kInt).to(at::kByte);
  const at::Tensor values = codes.view(at::kFloat8_e4m3fn).to(at::kFloat);
  for (int c = 0; c < 256; ++c) {
    const float want = values[c].item<float>();
    const float got = kernels::fp8_e4m3_value(static_cast<uint8_t>(c));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << c;
    } else {
      EXPECT_EQ(got, want) << c;
    }
  }
  EXPECT_EQ(kernels::fp8_e4m3_value(0x7E), kernels::kFp8E4M3Max);
}

struct Case {
  DType dtype;
  int64_t m, n, k;
};

class Fp8Linear : public ::testing::TestWithParam<Case> {};

// Random finite codes (no NaN) and positive scales.
std::vector<uint8_t> random_codes(int64_t n, int64_t k, std::mt19937& rng) {
  std::vector<uint8_t> codes(n * k);
  for (uint8_t& c : codes) {
    do {
      c = static_cast<uint8_t>(rng());
    } while ((c & 0x7F) == 0x7F);
  }
  return codes;
}

TEST_P(Fp8Linear, MatchesTheDequantizedReference) {
  const Case c = GetParam();
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(1e-4f, 1e-2f);
  const std::vector<uint8_t> codes = random_codes(c.n, c.k, rng);
  std::vector<float> scale(c.n);
  for (float& s : scale) s = uniform(rng);
  std::vector<uint8_t> packed(kernels::fp8_packed_bytes(c.n, c.k), 0xAB);
  cpu::pack_fp8_weight(codes.data(), packed.data(), c.n, c.k);

  const int64_t x_stride = c.k + 8;  // rows not contiguous
  std::vector<float> xf(c.m * x_stride, std::nanf(""));
  std::vector<cpu::bf16> xb(c.m * x_stride, cpu::bf16(std::nanf("")));
  std::vector<double> x(c.m * c.k);
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = 0; j < c.k; ++j) {
      const float v = normal(rng);
      xf[i * x_stride + j] = v;
      xb[i * x_stride + j] = cpu::bf16(v);
      x[i * c.k + j] = c.dtype == DType::kFloat32 ? v : static_cast<float>(cpu::bf16(v));
    }
  }
  const int64_t out_stride = c.n + 3;
  std::vector<float> outf(c.m * out_stride, -7.0f);
  std::vector<cpu::bf16> outb(c.m * out_stride, cpu::bf16(-7.0f));
  kernels::Fp8LinearParams p;
  p.out = c.dtype == DType::kFloat32 ? static_cast<void*>(outf.data()) : outb.data();
  p.x = c.dtype == DType::kFloat32 ? static_cast<const void*>(xf.data()) : xb.data();
  p.w = packed.data();
  p.scale = scale.data();
  p.m = c.m;
  p.n = c.n;
  p.k = c.k;
  p.x_stride = x_stride;
  p.out_stride = out_stride;
  p.dtype = c.dtype;
  cpu::fp8_linear(p);
  const double tol_rel = c.dtype == DType::kFloat32 ? 2e-5 : 8e-3;
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t r = 0; r < c.n; ++r) {
      double ref = 0, mag = 0;
      for (int64_t j = 0; j < c.k; ++j) {
        const double w =
            static_cast<double>(kernels::fp8_e4m3_value(codes[r * c.k + j])) * scale[r];
        ref += x[i * c.k + j] * w;
        mag += std::fabs(x[i * c.k + j] * w);
      }
      const double got = c.dtype == DType::kFloat32 ? outf[i * out_stride + r]
                                                    : static_cast<float>(outb[i * out_stride + r]);
      ASSERT_NEAR(got, ref, tol_rel * (mag + std::fabs(ref)) + 1e-9) << "row " << i << " col " << r;
    }
    for (int64_t r = c.n; r < out_stride; ++r) {
      const float pad = c.dtype == DType::kFloat32 ? outf[i * out_stride + r]
                                                   : static_cast<float>(outb[i * out_stride + r]);
      ASSERT_EQ(pad, -7.0f) << "wrote past n";
    }
  }
}

TEST_P(Fp8Linear, UnpackGivesTheScaledValues) {
  const Case c = GetParam();
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> uniform(1e-4f, 1e-2f);
  const std::vector<uint8_t> codes = random_codes(c.n, c.k, rng);
  std::vector<float> scale(c.n);
  for (float& s : scale) s = uniform(rng);
  std::vector<uint8_t> packed(kernels::fp8_packed_bytes(c.n, c.k));
  cpu::pack_fp8_weight(codes.data(), packed.data(), c.n, c.k);
  std::vector<float> f(c.n * c.k);
  std::vector<cpu::bf16> b(c.n * c.k);
  cpu::unpack_fp8_weight(packed.data(), scale.data(), f.data(), false, c.n, c.k);
  cpu::unpack_fp8_weight(packed.data(), scale.data(), b.data(), true, c.n, c.k);
  for (int64_t r = 0; r < c.n; ++r) {
    for (int64_t j = 0; j < c.k; ++j) {
      const float want = kernels::fp8_e4m3_value(codes[r * c.k + j]) * scale[r];
      ASSERT_EQ(f[r * c.k + j], want) << r << "," << j;
      ASSERT_EQ(static_cast<float>(b[r * c.k + j]), static_cast<float>(cpu::bf16(want)))
          << r << "," << j;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, Fp8Linear,
    ::testing::Values(Case{DType::kFloat32, 1, 37, 576}, Case{DType::kBFloat16, 1, 37, 576},
                      Case{DType::kFloat32, 3, 4, 32}, Case{DType::kBFloat16, 5, 64, 96},
                      Case{DType::kFloat32, 9, 13, 64}, Case{DType::kBFloat16, 4, 129, 1536}),
    [](const ::testing::TestParamInfo<Case>& info) {
      const Case& c = info.param;
      return std::string(kernels::dtype_name(c.dtype)) + "_m" + std::to_string(c.m) + "_n" +
             std::to_string(c.n) + "_k" + std::to_string(c.k);
    });

TEST(Fp8LinearParams, CheckNamesTheBadField) {
  kernels::Fp8LinearParams p;
  uint8_t w = 0;
  float s = 1;
  p.w = &w;
  p.scale = &s;
  p.n = 4;
  p.k = 48;
  p.x_stride = 48;
  p.out_stride = 4;
  EXPECT_NE(p.check().find("Fp8LinearParams.k = 48"), std::string::npos) << p.check();
  p.k = 64;
  p.x_stride = 64;
  p.scale = nullptr;
  EXPECT_NE(p.check().find("scale is null"), std::string::npos) << p.check();
  EXPECT_THROW(cpu::fp8_linear(p), std::invalid_argument);
  EXPECT_THROW(cpu::pack_fp8_weight(&w, &w, 4, 48), std::invalid_argument);
}

}  // namespace
}  // namespace taco
