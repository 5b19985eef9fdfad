// W4A16 GEMV and dequantize against a float64 host reference over the weight's values
// w = d (q - z) + m (random codes, fp16 scales and offsets, zero points 0-15). Outputs start NaN,
// the padding past n included.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "taco/cuda/w4a16.h"
#include "test_types.h"

namespace taco::cuda::testing {
namespace {

struct W4Weight {
  int64_t n, k;
  std::vector<uint8_t> codes, z;
  std::vector<uint16_t> d, m;
  std::vector<double> values;  // [n, k]
};

uint16_t half_bits(float v) { return __half_as_ushort(__float2half_rn(v)); }

W4Weight random_weight(int64_t n, int64_t k, std::mt19937& rng) {
  W4Weight w{n,
             k,
             std::vector<uint8_t>(n * k / 2),
             std::vector<uint8_t>(n * k / 32),
             std::vector<uint16_t>(n * k / 32),
             std::vector<uint16_t>(n * k / 32),
             std::vector<double>(n * k)};
  std::uniform_real_distribution<float> scale(0.002f, 0.02f), offset(-0.05f, 0.05f);
  for (auto& c : w.codes) c = static_cast<uint8_t>(rng());
  for (size_t b = 0; b < w.d.size(); ++b) {
    w.d[b] = half_bits(scale(rng));
    w.m[b] = b % 3 == 0 ? half_bits(offset(rng)) : 0;  // Q4_1-like offsets on some blocks
    w.z[b] = static_cast<uint8_t>(rng() % 16);
  }
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      const int q = (w.codes[(r * k + c) / 2] >> (4 * (c % 2))) & 15;
      const int64_t b = (r * k + c) / 32;
      w.values[r * k + c] =
          static_cast<double>(__half2float(__ushort_as_half(w.d[b]))) * (q - w.z[b]) +
          __half2float(__ushort_as_half(w.m[b]));
    }
  }
  return w;
}

struct DeviceWeight {
  DeviceBuffer<uint8_t> codes, z;
  DeviceBuffer<uint16_t> d, m;
  explicit DeviceWeight(const W4Weight& w) : codes(w.codes), z(w.z), d(w.d), m(w.m) {}
  W4A16Params params(const W4Weight& w, DType dtype) const {
    W4A16Params p;
    p.codes = codes.get();
    p.z = z.get();
    p.d = d.get();
    p.mofs = m.get();
    p.n = w.n;
    p.k = w.k;
    p.dtype = dtype;
    return p;
  }
};

template <typename T>
class W4A16Test : public ::testing::Test {};
using HalfTypes = ::testing::Types<__half, __nv_bfloat16>;
TYPED_TEST_SUITE(W4A16Test, HalfTypes, TypeNames);

template <typename T>
void check_gemv(int64_t m, int64_t n, int64_t k) {
  std::mt19937 rng(static_cast<uint32_t>(m * 1000 + n + k));
  const W4Weight w = random_weight(n, k, rng);
  const DeviceWeight dw(w);
  const int64_t x_stride = k + 8, out_stride = n + 3;
  const std::vector<T> x = random_vector<T>(m * x_stride, rng);
  DeviceBuffer<T> dx(x), dout(std::vector<T>(m * out_stride, nan_value<T>()));
  W4A16Params p = dw.params(w, dtype_of<T>());
  p.x = dx.get();
  p.out = dout.get();
  p.m = m;
  p.x_stride = x_stride;
  p.out_stride = out_stride;
  TACO_CUDA_LAUNCH_OK(w4a16_gemv(p, nullptr));
  const std::vector<T> got = dout.download();
  size_t bad = 0;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t r = 0; r < n; ++r) {
      double ref = 0, mag = 0;
      for (int64_t c = 0; c < k; ++c) {
        const double v = to_f(x[i * x_stride + c]) * w.values[r * k + c];
        ref += v;
        mag += std::fabs(v);
      }
      // Float32 sums, one rounding to T at the end.
      bad += !close(to_f(got[i * out_stride + r]), ref, 1e-5 * mag + 1e-6,
                    std::is_same_v<T, __half> ? 2e-3 : 1e-2);
    }
    for (int64_t r = n; r < out_stride; ++r) bad += !std::isnan(to_f(got[i * out_stride + r]));
  }
  EXPECT_EQ(bad, 0u) << "m " << m << " n " << n << " k " << k;
}

TYPED_TEST(W4A16Test, GemvMatchesTheDequantizedReference) {
  TACO_REQUIRE_GPU();
  for (const int64_t m : {1, 3, 8}) {
    check_gemv<TypeParam>(m, 576, 576);  // SmolLM2-135M q / o projections
    check_gemv<TypeParam>(m, 37, 1536);  // partial CTA, rows of 24 code words
    check_gemv<TypeParam>(m, 256, 4096);
  }
}

TYPED_TEST(W4A16Test, DequantizeGivesTheValues) {
  TACO_REQUIRE_GPU();
  std::mt19937 rng(9);
  const W4Weight w = random_weight(67, 320, rng);
  const DeviceWeight dw(w);
  DeviceBuffer<TypeParam> dense(std::vector<TypeParam>(w.n * w.k, nan_value<TypeParam>()));
  TACO_CUDA_LAUNCH_OK(w4a16_dequantize(dw.params(w, dtype_of<TypeParam>()), dense.get(), nullptr));
  const std::vector<TypeParam> got = dense.download();
  size_t bad = 0;
  for (int64_t i = 0; i < w.n * w.k; ++i) {
    bad += to_f(got[i]) != round_to<TypeParam>(static_cast<float>(w.values[i]));
  }
  EXPECT_EQ(bad, 0u);
}

TEST(W4A16Params, BadParamsAreRefused) {
  W4A16Params p;
  p.n = 4;
  p.k = 48;
  EXPECT_NE(p.check().find("W4A16Params.k = 48"), std::string::npos) << p.check();
  p.k = 64;
  p.x_stride = 64;
  p.out_stride = 4;
  EXPECT_NE(p.check().find("codes is null"), std::string::npos) << p.check();
  EXPECT_EQ(w4a16_gemv(p, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace taco::cuda::testing
