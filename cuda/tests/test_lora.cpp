// lora_apply (shrink then expand) against a float64 host reference: 3 slots and tokens without
// one interleaved, three slices (a fused q/k/v projection), strided x and y rows.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "taco/cuda/lora.h"
#include "test_types.h"

namespace taco::cuda::testing {
namespace {

template <typename T>
class LoraTest : public ::testing::Test {};
TYPED_TEST_SUITE(LoraTest, ElementTypes, TypeNames);

template <typename T>
void check_lora(int64_t tokens, int64_t in, int64_t rank, std::vector<int32_t> starts) {
  std::mt19937 rng(static_cast<uint32_t>(tokens * 31 + in));
  const int64_t slices = static_cast<int64_t>(starts.size()) - 1, out = starts.back();
  const int64_t slots = 3, x_stride = in + 8, y_stride = out + 4, sr = slices * rank;
  const std::vector<T> x = random_vector<T>(tokens * x_stride, rng);
  const std::vector<T> y0 = random_vector<T>(tokens * y_stride, rng);
  const std::vector<T> a = random_vector<T>(slots * sr * in, rng, 0.1f);
  const std::vector<T> b = random_vector<T>(slots * rank * out, rng, 0.1f);
  std::vector<int32_t> slot(tokens);
  for (int64_t t = 0; t < tokens; ++t) slot[t] = static_cast<int32_t>(t * 7 % (slots + 1)) - 1;
  DeviceBuffer<T> dx(x), dy(y0), da(a), db(b);
  DeviceBuffer<int32_t> dslot(slot);
  DeviceBuffer<float> scratch(tokens * sr);
  LoraParams p;
  p.y = dy.get();
  p.x = dx.get();
  p.a = da.get();
  p.b = db.get();
  p.token_slot = dslot.get();
  p.scratch = scratch.get();
  for (int64_t s = 0; s <= slices; ++s) p.slice_start[s] = starts[s];
  p.tokens = tokens, p.in = in, p.out = out, p.rank = rank, p.slices = slices;
  p.num_slots = slots, p.x_stride = x_stride, p.y_stride = y_stride;
  p.dtype = p.weight_dtype = dtype_of<T>();
  TACO_CUDA_LAUNCH_OK(lora_apply(p, nullptr));
  const std::vector<T> got = dy.download();
  const auto [atol, rtol] = tolerance<T>();
  size_t bad = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<double> s(sr, 0.0);
    if (slot[t] >= 0) {
      for (int64_t j = 0; j < sr; ++j) {
        for (int64_t c = 0; c < in; ++c) {
          s[j] += to_f(x[t * x_stride + c]) * to_f(a[(slot[t] * in + c) * sr + j]);
        }
      }
    }
    for (int64_t o = 0; o < y_stride; ++o) {
      double want = to_f(y0[t * y_stride + o]);
      if (slot[t] >= 0 && o < out) {
        int64_t sl = 0;
        while (sl + 1 < slices && o >= starts[sl + 1]) ++sl;
        for (int64_t r = 0; r < rank; ++r) {
          want += s[sl * rank + r] * to_f(b[(slot[t] * rank + r) * out + o]);
        }
      }
      const double g = to_f(got[t * y_stride + o]);
      bad += slot[t] < 0 || o >= out ? g != to_f(y0[t * y_stride + o])
                                     : !close(g, round_to<T>(static_cast<float>(want)), atol, rtol);
    }
  }
  EXPECT_EQ(bad, 0u) << "tokens " << tokens << " in " << in << " rank " << rank;
}

TYPED_TEST(LoraTest, ShrinkExpandMatchesTheReference) {
  TACO_REQUIRE_GPU();
  check_lora<TypeParam>(37, 576, 16, {0, 576, 768, 960});  // SmolLM2's fused q/k/v
  check_lora<TypeParam>(5, 1536, 8, {0, 576});             // its down projection
  check_lora<TypeParam>(300, 72, 4, {0, 40, 80});          // gate / up, many tokens
}

}  // namespace
}  // namespace taco::cuda::testing
