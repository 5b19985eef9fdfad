// rms_norm and fused_add_rms_norm against a float64 reference that rounds where HF rounds
// (residual sum and normalized value in the model dtype). Outputs start NaN.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "taco/cuda/norm.h"
#include "test_types.h"

namespace taco::cuda::testing {
namespace {

template <typename T>
class NormTest : public ::testing::Test {};
TYPED_TEST_SUITE(NormTest, ElementTypes, TypeNames);

// Reference of one row: values v[hidden] (already rounded to T) -> round(round(v / rms) * w).
template <typename T>
void norm_row_ref(double* out, const float* v, const T* w, int64_t hidden, float eps) {
  double ss = 0.0;
  for (int64_t i = 0; i < hidden; ++i) ss += static_cast<double>(v[i]) * v[i];
  const double inv = 1.0 / std::sqrt(ss / hidden + eps);
  for (int64_t i = 0; i < hidden; ++i) {
    out[i] = round_to<T>(round_to<T>(static_cast<float>(v[i] * inv)) * to_f(w[i]));
  }
}

template <typename T>
void check_rms_norm(int64_t hidden, int64_t pad) {
  std::mt19937 rng(static_cast<uint32_t>(hidden + pad));
  const int64_t tokens = 23, x_row = hidden + pad, out_row = hidden + 2 * pad;
  const float eps = 1e-6f;
  const std::vector<T> x = random_vector<T>(tokens * x_row, rng), w = random_vector<T>(hidden, rng);
  DeviceBuffer<T> dx(x), dw(w), dout(std::vector<T>(tokens * out_row, nan_value<T>()));
  RmsNormParams p{dout.get(), dx.get(), nullptr, dw.get(), tokens,
                  hidden,     out_row,  x_row,   eps,      dtype_of<T>()};
  TACO_CUDA_LAUNCH_OK(rms_norm(p, nullptr));
  const std::vector<T> got = dout.download();
  const auto [atol, rtol] = tolerance<T>();
  std::vector<float> row(hidden);
  std::vector<double> want(hidden);
  size_t bad = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t i = 0; i < hidden; ++i) row[i] = to_f(x[t * x_row + i]);
    norm_row_ref(want.data(), row.data(), w.data(), hidden, eps);
    for (int64_t i = 0; i < hidden; ++i)
      bad += !close(to_f(got[t * out_row + i]), want[i], atol, rtol);
  }
  EXPECT_EQ(bad, 0u) << "hidden " << hidden << " pad " << pad;
}

template <typename T>
void check_fused(int64_t hidden) {
  std::mt19937 rng(static_cast<uint32_t>(hidden));
  const int64_t tokens = 19;
  const float eps = 1e-5f;
  const std::vector<T> x = random_vector<T>(tokens * hidden, rng);
  const std::vector<T> res = random_vector<T>(tokens * hidden, rng);
  const std::vector<T> w = random_vector<T>(hidden, rng);
  DeviceBuffer<T> dx(x), dres(res), dw(w);
  // out aliases x, as the model calls it.
  RmsNormParams p{dx.get(), dx.get(), dres.get(), dw.get(), tokens,
                  hidden,   hidden,   hidden,     eps,      dtype_of<T>()};
  TACO_CUDA_LAUNCH_OK(fused_add_rms_norm(p, nullptr));
  const std::vector<T> got_x = dx.download(), got_res = dres.download();
  const auto [atol, rtol] = tolerance<T>();
  std::vector<float> sum(hidden);
  std::vector<double> want(hidden);
  size_t bad = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t i = 0; i < hidden; ++i) {
      sum[i] = round_to<T>(to_f(res[t * hidden + i]) + to_f(x[t * hidden + i]));
      bad += to_f(got_res[t * hidden + i]) != sum[i];  // the residual add is exact in float
    }
    norm_row_ref(want.data(), sum.data(), w.data(), hidden, eps);
    for (int64_t i = 0; i < hidden; ++i)
      bad += !close(to_f(got_x[t * hidden + i]), want[i], atol, rtol);
  }
  EXPECT_EQ(bad, 0u) << "hidden " << hidden;
}

TYPED_TEST(NormTest, RmsNorm) {
  TACO_REQUIRE_GPU();
  check_rms_norm<TypeParam>(576, 0);    // SmolLM2-135M hidden size, 16-byte path
  check_rms_norm<TypeParam>(4096, 64);  // strided rows
  check_rms_norm<TypeParam>(100, 3);    // odd stride: element path
}

TYPED_TEST(NormTest, FusedAddRmsNorm) {
  TACO_REQUIRE_GPU();
  check_fused<TypeParam>(576);
  check_fused<TypeParam>(2048);
  check_fused<TypeParam>(99);
}

}  // namespace
}  // namespace taco::cuda::testing
