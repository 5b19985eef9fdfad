// write_kv_cache and copy_blocks against exact host copies. The cache starts NaN everywhere, so a
// slot written that should not be (or one missed) shows up bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "taco/cuda/kv_cache.h"
#include "test_types.h"

namespace taco::cuda::testing {
namespace {

template <typename T>
class KvCacheTest : public ::testing::Test {};
TYPED_TEST_SUITE(KvCacheTest, ElementTypes, TypeNames);

// Bitwise equality through float (NaN == NaN here: the poison must survive where expected).
template <typename T>
bool same(T a, T b) {
  const float x = to_f(a), y = to_f(b);
  return (std::isnan(x) && std::isnan(y)) || x == y;
}

template <typename T>
void check_write(int64_t heads, int64_t dim, int64_t row_pad, int64_t block_size) {
  std::mt19937 rng(7 + dim + row_pad);
  const int64_t tokens = 37, num_blocks = 9, row = heads * dim + row_pad;
  const std::vector<T> key = random_vector<T>(tokens * row, rng);
  const std::vector<T> value = random_vector<T>(tokens * row, rng);
  std::vector<int64_t> slots(num_blocks * block_size);
  std::iota(slots.begin(), slots.end(), 0);
  std::shuffle(slots.begin(), slots.end(), rng);
  slots.resize(tokens);
  slots[3] = -1;  // padding tokens are skipped
  slots[20] = -1;
  const size_t half = num_blocks * heads * block_size * dim;
  DeviceBuffer<T> k(key), v(value), kv(std::vector<T>(2 * half, nan_value<T>()));
  DeviceBuffer<int64_t> slot_mapping(slots);

  WriteKvParams p{k.get(),    v.get(), kv.get(), slot_mapping.get(), tokens, heads, dim, block_size,
                  num_blocks, row,     row,      dtype_of<T>()};
  TACO_CUDA_LAUNCH_OK(write_kv_cache(p, nullptr));

  std::vector<T> want(2 * half, nan_value<T>());
  for (int64_t t = 0; t < tokens; ++t) {
    if (slots[t] < 0) continue;
    const int64_t block = slots[t] / block_size, r = slots[t] % block_size;
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t d = 0; d < dim; ++d) {
        const size_t at = ((block * heads + h) * block_size + r) * dim + d;
        want[at] = key[t * row + h * dim + d];
        want[half + at] = value[t * row + h * dim + d];
      }
    }
  }
  const std::vector<T> got = kv.download();
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) bad += !same(got[i], want[i]);
  EXPECT_EQ(bad, 0u) << "heads " << heads << " dim " << dim << " row_pad " << row_pad;
}

TYPED_TEST(KvCacheTest, WriteBySlotMapping) {
  TACO_REQUIRE_GPU();
  check_write<TypeParam>(4, 128, 0, 16);  // 16-byte path
  check_write<TypeParam>(2, 64, 8, 32);   // strided rows, still aligned
  check_write<TypeParam>(3, 40, 3, 16);   // odd row stride: element path
}

TYPED_TEST(KvCacheTest, CopyBlocksAllLayers) {
  TACO_REQUIRE_GPU();
  using T = TypeParam;
  std::mt19937 rng(11);
  const int64_t layers = 3, num_blocks = 10, heads = 2, block_size = 16, dim = 64;
  const size_t block_elems = heads * block_size * dim, layer_elems = 2 * num_blocks * block_elems;
  std::vector<std::vector<T>> host;
  std::vector<std::unique_ptr<DeviceBuffer<T>>> caches;
  std::vector<void*> bases;
  for (int64_t l = 0; l < layers; ++l) {
    host.push_back(random_vector<T>(layer_elems, rng));
    caches.push_back(std::make_unique<DeviceBuffer<T>>(host.back()));
    bases.push_back(caches.back()->get());
  }
  const std::vector<int32_t> pairs = {0, 5, 2, 7, 2, 9, 4, 1};  // (src, dst); 2 forks twice
  DeviceBuffer<void*> layer_ptrs(bases);
  DeviceBuffer<int32_t> pair_buf(pairs);
  CopyBlocksParams p{layer_ptrs.get(), pair_buf.get(),
                     layers,           4,
                     num_blocks,       static_cast<int64_t>(block_elems * sizeof(T))};
  TACO_CUDA_LAUNCH_OK(copy_blocks(p, nullptr));

  for (int64_t l = 0; l < layers; ++l) {
    std::vector<T> want = host[l];
    for (size_t i = 0; i < pairs.size(); i += 2) {
      for (int64_t half = 0; half < 2; ++half) {
        const size_t base = half * num_blocks * block_elems;
        std::copy_n(host[l].begin() + base + pairs[i] * block_elems, block_elems,
                    want.begin() + base + pairs[i + 1] * block_elems);
      }
    }
    const std::vector<T> got = caches[l]->download();
    size_t bad = 0;
    for (size_t i = 0; i < got.size(); ++i) bad += !same(got[i], want[i]);
    EXPECT_EQ(bad, 0u) << "layer " << l;
  }
}

}  // namespace
}  // namespace taco::cuda::testing
