// silu_and_mul against a float reference that rounds the activation before the product, as HF
// (and the CPU kernel) do. Outputs start NaN.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "taco/cuda/activation.h"
#include "test_types.h"

namespace taco::cuda::testing {
namespace {

template <typename T>
class ActivationTest : public ::testing::Test {};
TYPED_TEST_SUITE(ActivationTest, ElementTypes, TypeNames);

template <typename T>
void check_silu(int64_t inter, int64_t pad) {
  std::mt19937 rng(static_cast<uint32_t>(inter + pad));
  const int64_t tokens = 17, row = 2 * inter + pad;
  const std::vector<T> x = random_vector<T>(tokens * row, rng, 2.0f);
  DeviceBuffer<T> dx(x), dout(std::vector<T>(tokens * inter, nan_value<T>()));
  SiluAndMulParams p{dout.get(), dx.get(), tokens, inter, row, dtype_of<T>()};
  TACO_CUDA_LAUNCH_OK(silu_and_mul(p, nullptr));
  const std::vector<T> got = dout.download();
  const auto [atol, rtol] = tolerance<T>();
  size_t bad = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t i = 0; i < inter; ++i) {
      const double g = to_f(x[t * row + i]), u = to_f(x[t * row + inter + i]);
      const double act = round_to<T>(static_cast<float>(g / (1.0 + std::exp(-g))));
      bad += !close(to_f(got[t * inter + i]), round_to<T>(static_cast<float>(act * u)), atol, rtol);
    }
  }
  EXPECT_EQ(bad, 0u) << "inter " << inter << " pad " << pad;
}

TYPED_TEST(ActivationTest, SiluAndMul) {
  TACO_REQUIRE_GPU();
  check_silu<TypeParam>(1536, 0);  // SmolLM2-135M intermediate size
  check_silu<TypeParam>(512, 8);
  check_silu<TypeParam>(37, 1);  // element path, partial last block
}

}  // namespace
}  // namespace taco::cuda::testing
