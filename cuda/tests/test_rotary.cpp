// rotary_embedding against a float reference on the same rounded inputs: neox and GPT-J pairing,
// partial rotation (rot_dim < head_dim leaves the tail untouched) and strided rows.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "taco/cuda/rotary.h"
#include "test_types.h"

namespace taco::cuda::testing {
namespace {

template <typename T>
class RotaryTest : public ::testing::Test {};
TYPED_TEST_SUITE(RotaryTest, ElementTypes, TypeNames);

// Rotates the heads of one row set [tokens, row] in place (host), as the CPU kernel does.
template <typename T>
void rotate_ref(std::vector<T>& x, const std::vector<int64_t>& pos, const std::vector<float>& cs,
                int64_t heads, int64_t dim, int64_t rot, int64_t row, bool neox) {
  const int64_t half = rot / 2;
  for (size_t t = 0; t < pos.size(); ++t) {
    const float* cos = cs.data() + pos[t] * rot;
    const float* sin = cos + half;
    for (int64_t h = 0; h < heads; ++h) {
      T* head = x.data() + t * row + h * dim;
      for (int64_t i = 0; i < half; ++i) {
        const int64_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        const float x0 = to_f(head[a]), x1 = to_f(head[b]);
        head[a] = from_f<T>(x0 * cos[i] - x1 * sin[i]);
        head[b] = from_f<T>(x1 * cos[i] + x0 * sin[i]);
      }
    }
  }
}

template <typename T>
void check_rotary(bool neox, int64_t dim, int64_t rot) {
  std::mt19937 rng(static_cast<uint32_t>(dim * 2 + neox));
  const int64_t tokens = 29, heads = 6, kv_heads = 2, max_pos = 300;
  const int64_t q_row = heads * dim + 16, k_row = kv_heads * dim + 8;  // strided rows
  std::vector<float> cs(max_pos * rot);
  for (int64_t p = 0; p < max_pos; ++p) {
    for (int64_t i = 0; i < rot / 2; ++i) {
      const double freq = std::pow(10000.0, -2.0 * i / rot);
      cs[p * rot + i] = static_cast<float>(std::cos(p * freq));
      cs[p * rot + rot / 2 + i] = static_cast<float>(std::sin(p * freq));
    }
  }
  std::vector<int64_t> pos(tokens);
  std::uniform_int_distribution<int64_t> pick(0, max_pos - 1);
  for (auto& p : pos) p = pick(rng);
  std::vector<T> q = random_vector<T>(tokens * q_row, rng),
                 k = random_vector<T>(tokens * k_row, rng);
  DeviceBuffer<T> dq(q), dk(k);
  DeviceBuffer<int64_t> dpos(pos);
  DeviceBuffer<float> dcs(cs);
  RotaryParams p{dpos.get(), dq.get(), dk.get(), dcs.get(), tokens,  heads, kv_heads,
                 dim,        rot,      q_row,    k_row,     max_pos, neox,  dtype_of<T>()};
  TACO_CUDA_LAUNCH_OK(rotary_embedding(p, nullptr));

  rotate_ref(q, pos, cs, heads, dim, rot, q_row, neox);
  rotate_ref(k, pos, cs, kv_heads, dim, rot, k_row, neox);
  const auto [atol, rtol] = tolerance<T>();
  const std::vector<T> gq = dq.download(), gk = dk.download();
  size_t bad = 0;
  for (size_t i = 0; i < q.size(); ++i) bad += !close(to_f(gq[i]), to_f(q[i]), atol, rtol);
  for (size_t i = 0; i < k.size(); ++i) bad += !close(to_f(gk[i]), to_f(k[i]), atol, rtol);
  EXPECT_EQ(bad, 0u) << (neox ? "neox" : "gptj") << " dim " << dim << " rot " << rot;
}

TYPED_TEST(RotaryTest, NeoxAndGptjFullAndPartial) {
  TACO_REQUIRE_GPU();
  for (bool neox : {true, false}) {
    check_rotary<TypeParam>(neox, 128, 128);
    check_rotary<TypeParam>(neox, 64, 32);  // partial: the tail 32 features stay as they were
    check_rotary<TypeParam>(neox, 80, 80);
  }
}

}  // namespace
}  // namespace taco::cuda::testing
